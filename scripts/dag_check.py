"""`make test`, scheduler step: checks examples/airflow_dag.py (and the three-task Spark DAG,
examples/airflow_spark_dag.py: task order, the rendered --as-of / --step / --work).

1. Its command renders `--as-of` to the END of the data interval: for the run of 2026-11-30
   02:30 UTC (Airflow 2's cron interval [2026-11-29 02:30, 2026-11-30 02:30), or Airflow 3's
   trigger interval [2026-11-30 02:30, 2026-11-30 02:30]) it must say `--as-of 2026-11-30`,
   and the partition check must look at runs/as_of=2026-11-30/_SUCCESS.
2. Its exit-code rules: 2 and 3 fail without retry (AirflowFailException), 1, other codes and
   signals are retried (AirflowException), 0 succeeds — run for real with child processes
   that exit so.

With Airflow importable, the DAG is loaded by Airflow's DagBag, the interval comes from the
DAG's own timetable and the template is rendered by the task. Without it (CI does not install
Airflow: hundreds of packages, minutes of install for one example file) the file is imported
with a minimal stand-in for the three Airflow names it uses, and the template is rendered with
jinja2 and Airflow's `ds` filter (`value.strftime("%Y-%m-%d")`, airflow/templates.py) under
StrictUndefined, as Airflow renders it. Exits non-zero on any failure.
"""
import datetime as dt
import importlib.util
import os
import sys
import tempfile
import types

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DAG_FILE = os.path.join(ROOT, "examples", "airflow_dag.py")
SPARK_DAG_FILE = os.path.join(ROOT, "examples", "airflow_spark_dag.py")
UTC = dt.timezone.utc
RUN_AT = dt.datetime(2026, 11, 30, 2, 30, tzinfo=UTC)
# (label, data_interval_start, data_interval_end) of the run at RUN_AT.
INTERVALS = [
    ("Airflow 2 cron interval", RUN_AT - dt.timedelta(days=1), RUN_AT),
    ("Airflow 3 cron trigger", RUN_AT, RUN_AT),
]
WANT_AS_OF = "2026-11-30"


def ds_filter(value):
    """Airflow's `ds` filter."""
    return None if value is None else value.strftime("%Y-%m-%d")


class Stand_in:
    """The Airflow names the DAG file uses, recording the tasks it declares."""

    def __init__(self):
        self.tasks = {}
        self.edges = []
        airflow = types.ModuleType("airflow")
        decorators = types.ModuleType("airflow.decorators")
        exceptions = types.ModuleType("airflow.exceptions")

        class AirflowException(Exception):
            pass

        class AirflowFailException(AirflowException):
            pass

        class DAG:
            def __init__(self, **kwargs):
                self.kwargs = kwargs

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        stand_in = self

        class Called:
            def __init__(self, task_id, fn, args):
                self.task_id, self.fn, self.args = task_id, fn, args

            def __rshift__(self, other):
                stand_in.edges.append((self.task_id, other.task_id))
                return other

        def task(fn=None, **options):
            def wrap(f):
                def call(*args):
                    c = Called(options.get("task_id", f.__name__), f, args)
                    stand_in.tasks[c.task_id] = c
                    return c
                return call
            return wrap(fn) if fn is not None else wrap

        airflow.DAG = DAG
        decorators.task = task
        exceptions.AirflowException = AirflowException
        exceptions.AirflowFailException = AirflowFailException
        airflow.decorators = decorators
        airflow.exceptions = exceptions
        self.modules = {"airflow": airflow, "airflow.decorators": decorators,
                        "airflow.exceptions": exceptions}

    def render(self, module, task_id, interval):
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined)
        env.filters["ds"] = ds_filter
        _, start, end = interval
        context = {"data_interval_start": start, "data_interval_end": end,
                   "ds": ds_filter(start), "logical_date": start}
        return [env.from_string(a).render(context) for a in self.tasks[task_id].args]


def load_spark_dag():
    """examples/airflow_spark_dag.py with the stand-in (it imports examples/airflow_dag.py, as
    in a DAGs folder): a renderer of its tasks' arguments and its task edges."""
    stand_in = Stand_in()
    saved = {k: sys.modules.get(k) for k in stand_in.modules}
    sys.modules.update(stand_in.modules)
    sys.path.insert(0, os.path.dirname(SPARK_DAG_FILE))
    try:
        # The import it makes, first, so that only its own tasks are recorded.
        importlib.import_module("airflow_dag")
        stand_in.tasks.clear()
        stand_in.edges.clear()
        spec = importlib.util.spec_from_file_location("churnclv_spark_dag", SPARK_DAG_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
        sys.modules.pop("airflow_dag", None)
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module, stand_in


def load_dag_module():
    """The DAG file as a module, and a renderer of its tasks' templated arguments."""
    try:
        import airflow  # noqa: F401
    except ImportError:
        stand_in = Stand_in()
        sys.modules.update(stand_in.modules)
        spec = importlib.util.spec_from_file_location("churnclv_dag", DAG_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module, stand_in.render, "jinja2 with Airflow's ds filter (Airflow not installed)"

    from airflow.models import DagBag
    from airflow.timetables.base import DataInterval, TimeRestriction

    bag = DagBag(dag_folder=DAG_FILE, include_examples=False)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["churnclv_nightly"]  # get_dag would look in the metadata database
    spec = importlib.util.spec_from_file_location("churnclv_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The interval of the run at RUN_AT, from the DAG's own timetable.
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(RUN_AT - dt.timedelta(days=2),
                                                  RUN_AT - dt.timedelta(days=1)),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True))
    INTERVALS[:] = [("this Airflow's timetable", info.data_interval.start, info.data_interval.end)]

    def render(_module, task_id, interval):
        _, start, end = interval
        context = {"data_interval_start": start, "data_interval_end": end,
                   "ds": ds_filter(start), "logical_date": start}
        t = dag.get_task(task_id)
        return list(t.render_template(list(t.op_args), context))

    import airflow as real

    return module, render, f"Airflow {real.__version__} DagBag"


def main():
    module, render, how = load_dag_module()
    exceptions = sys.modules["airflow.exceptions"]
    passed, failures = 0, []

    def expect(ok, what):
        nonlocal passed
        if ok:
            passed += 1
        else:
            failures.append(what)

    for interval in INTERVALS:
        (command,) = render(module, "score_customers", interval)
        expect(f"--as-of {WANT_AS_OF} " in command,
               f"{interval[0]}: rendered command {command!r} lacks --as-of {WANT_AS_OF}")
        (success,) = render(module, "check_partition", interval)
        expect(success == f"/data/churnclv/runs/as_of={WANT_AS_OF}/_SUCCESS",
               f"{interval[0]}: partition check looks at {success!r}")

    # Exit codes → retry or not, with real child processes.
    cases = [
        ("exit 0", None),
        ("exit 2", "fail"),
        ("exit 3", "fail"),
        ("exit 1", "retry"),
        ("exit 143", "retry"),
        ("kill -TERM $$", "retry"),
    ]
    for script, want in cases:
        try:
            module.run_churnclv(f"sh -c '{script}'")
            got = None
        except exceptions.AirflowFailException:
            got = "fail"
        except exceptions.AirflowException:
            got = "retry"
        expect(got == want, f"`{script}`: {got or 'success'}, expected {want or 'success'}")
    # The final JSON error line of churnclv becomes the task's failure message.
    line = '{"level":"ERROR","stage":"exit","message":"e.parquet: no usable rows","exit_code":2}'
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "fails.sh")
        with open(script, "w") as f:
            f.write(f"echo '{line}' >&2\nexit 2\n")
        try:
            module.run_churnclv(f"sh {script}")
            message = ""
        except exceptions.AirflowException as e:
            message = str(e)
    expect(message == "churnclv exited 2 (bad input, config or usage (or another run holds the "
                      "lock)): e.parquet: no usable rows", f"failure message {message!r}")

    # The Spark DAG: the three steps in order, one --work per as-of, the interval's end.
    spark_module, spark = load_spark_dag()
    expect(spark.edges == [("features", "train"), ("train", "score"), ("score", "check_partition")],
           f"spark DAG task order {spark.edges}")
    for interval in INTERVALS:
        commands = {t: spark.render(spark_module, t, interval)[0] for t in ("features", "train", "score")}
        for step, command in commands.items():
            expect(f"--as-of {WANT_AS_OF} " in command and command.endswith(f"--step {step}")
                   and f"--work /shared/churnclv-work/as_of={WANT_AS_OF} " in command,
                   f"spark DAG {step}: rendered command {command!r}")
        (success,) = spark.render(spark_module, "check_partition", interval)
        expect(success == f"/data/churnclv/runs/as_of={WANT_AS_OF}/_SUCCESS",
               f"spark DAG: partition check looks at {success!r}")

    for f in failures:
        print(f"dag check: FAILED: {f}", file=sys.stderr)
    print(f"dag check ({how}): {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
