"""Airflow DAG: the nightly churnclv run, then a check of the partition it published.

churnclv exits 0 (ok), 1 (internal error), 2 (bad input / config / usage) or 3 (quality gate
failed: nothing published); any non-zero exit fails the task. Reruns for the same logical date
replace that date's partition atomically, so retries are safe.
"""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

with DAG(
    dag_id="churnclv_nightly",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
) as dag:
    score = BashOperator(
        task_id="score_customers",
        bash_command=(
            "churnclv --log-format json run "
            "--events /data/events/ --out /data/scores "
            "--as-of {{ ds }} --config /etc/churnclv/churnclv.toml --min-auc 0.70"
        ),
    )
    check = BashOperator(
        task_id="check_partition",
        bash_command="test -f /data/scores/as_of={{ ds }}/_SUCCESS",
    )
    score >> check
