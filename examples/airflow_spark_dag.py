"""Airflow DAG: churnclv's three stages on a Spark cluster (docs/scale-out.md) — features on
the engine (Spark Connect), training on one node from a customer sample, scoring in shards
(pass 1 on the executors, one task per bucket; the global cut points; pass 2 on the
executors; one publish through the churnclv binary) — then the partition check. The
executors run the binary at the same path as the driver (--bin, in the image) and reach
--work (a shared volume).

Each task runs `spark/churnclv_spark.py --step …` with the same `--work` folder, one per
as-of date on storage the three tasks share, so a retried or re-run task finds what the
previous step handed over. Dates and retries are those of examples/airflow_dag.py (its
module docstring): `--as-of` is the END of the data interval; exits 2 and 3 fail at once,
1 and signals are retried (every step replaces only its own outputs, and publishing replaces
the as-of partition atomically, so a retry is safe). Both files go in the DAGs folder: this
one imports `run_churnclv` from the other. The training share is the job's config
(/etc/churnclv/churnclv.toml: `[spark] train_sample = 0.01`, 1% of the customers), so the
three tasks and a re-run read the same one; `--train-sample` on the command line overrides it.
"""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.decorators import task
from airflow.exceptions import AirflowFailException

from airflow_dag import run_churnclv

OUT = "/data/churnclv"
AS_OF = "{{ data_interval_end | ds }}"
WORK = "/shared/churnclv-work/as_of=" + AS_OF
DRIVER = (
    "python /opt/churnclv/spark/churnclv_spark.py --remote sc://spark-connect:15002 "
    "--events s3a://lake/events/ --as-of " + AS_OF + " --horizon 90d --out " + OUT + " "
    "--work " + WORK + " --buckets 256 --config /etc/churnclv/churnclv.toml "
    "--bin /opt/churnclv/bin/churnclv"
)
STEPS = ["features", "train", "score"]
SUCCESS_FILE = OUT + "/runs/as_of=" + AS_OF + "/_SUCCESS"

with DAG(
    dag_id="churnclv_spark_nightly",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
) as dag:

    @task(task_id="features")
    def features(command):
        run_churnclv(command)

    @task(task_id="train")
    def train(command):
        run_churnclv(command)

    @task(task_id="score")
    def score(command):
        run_churnclv(command)

    @task(task_id="check_partition", retries=0)
    def check_partition(success_file):
        import os

        if not os.path.isfile(success_file):
            raise AirflowFailException(f"{success_file} is missing: nothing was published")

    (features(DRIVER + " --step features") >> train(DRIVER + " --step train")
     >> score(DRIVER + " --step score") >> check_partition(SUCCESS_FILE))
