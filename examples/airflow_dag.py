"""Airflow DAG: the nightly churnclv run, then a check of the partition it published.

Which date: `--as-of` is the END of the run's data interval, `{{ data_interval_end | ds }}`.
On Airflow 2 with a cron schedule the interval of the 02:30 run on day D is [D-1 02:30,
D 02:30), so `{{ ds }}` (its start) would be D-1 and the run would silently leave out the
last day of events; on Airflow 3 (CronTriggerTimetable, start = end = the run's time) both
give D. The interval's end is right on both, and in a backfill each run scores its own day.
As in the cron example, a run on day D scores as of D: events before midnight UTC of D.

Retries follow churnclv's exit codes: 2 (bad input, config or usage; another run holding the
lock) and 3 (a quality gate failed, nothing published) fail at once — no retry fixes bad input
or a tripped gate, and retrying only delays the alert. 1 (internal error) and a signal
(killed, or 130/143 when interrupted) are retried: reruns for the same date replace that
date's partition atomically, so a retry is safe.
"""
import json
import shlex
import subprocess
from datetime import datetime, timedelta

from airflow import DAG
from airflow.decorators import task
from airflow.exceptions import AirflowException, AirflowFailException

OUT = "/data/churnclv"
AS_OF = "{{ data_interval_end | ds }}"
COMMAND = (
    "churnclv --log-format json run --events /data/events/ --out " + OUT + " "
    "--as-of " + AS_OF + " --config /etc/churnclv/churnclv.toml --min-auc 0.70"
)
# The run's commit marker: written last, once every table partition of the run is in place.
SUCCESS_FILE = OUT + "/runs/as_of=" + AS_OF + "/_SUCCESS"

# Exit codes that no retry can fix: fail the task without retrying.
NO_RETRY = {
    2: "bad input, config or usage (or another run holds the lock)",
    3: "a quality gate failed; nothing was published",
}


def failure(returncode, last_error=""):
    """The exception for a finished churnclv process, or None when it succeeded."""
    if returncode == 0:
        return None
    detail = f": {last_error}" if last_error else ""
    if returncode in NO_RETRY:
        return AirflowFailException(
            f"churnclv exited {returncode} ({NO_RETRY[returncode]}){detail}")
    if returncode < 0:
        return AirflowException(f"churnclv was killed by signal {-returncode}{detail}")
    return AirflowException(f"churnclv exited {returncode}{detail}")


def run_churnclv(command):
    """Runs the rendered command, logging its output line by line; raises as `failure` says.
    If the task itself is stopped, churnclv gets SIGTERM first, so it removes its staging
    folder and releases its lock before it exits."""
    proc = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last_error = ""
    try:
        for line in proc.stdout:
            print(line, end="")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("level") == "ERROR":
                last_error = event.get("message", "")
        returncode = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    error = failure(returncode, last_error)
    if error is not None:
        raise error


with DAG(
    dag_id="churnclv_nightly",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
) as dag:

    @task(task_id="score_customers")
    def score_customers(command):
        run_churnclv(command)

    @task(task_id="check_partition", retries=0)
    def check_partition(success_file):
        import os

        if not os.path.isfile(success_file):
            raise AirflowFailException(f"{success_file} is missing: nothing was published")

    score_customers(COMMAND) >> check_partition(SUCCESS_FILE)
