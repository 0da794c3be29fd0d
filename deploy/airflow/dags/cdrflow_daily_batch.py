"""Seed 003's daily batch, orchestrated by Airflow.

Five tasks under seed 003's names, each one step of `cdrflow daily` for the
day the run covers (`{{ ds }}`: a run scheduled at 01:00 covers the day
before). Like seed 003's DAG: daily at 01:00, 3 retries 5 minutes apart, no
catch-up. The retries are Airflow's (`--retries 0` below), so a retrying
task shows orange in the UI instead of sleeping inside a green one.

Where cdrflow is and which store it uses come from the environment of the
Airflow worker, passed through to every task:
  CDRFLOW_BIN          the cdrflow executable (default: `cdrflow` on PATH)
  DATABASE_URL         the store (postgres://...), or
  CDRFLOW_DATA_DIR     the embedded store's directory
  CDRFLOW_DAILY_MIN_EVENTS, CDRFLOW_RAW_EVENTS_RETENTION_DAYS, ...
                       any other cdrflow setting (see `cdrflow daily --help`)
`send_summary` prints the day's summary as one JSON line, which Airflow
keeps as the task's XCom.
"""

import os
import shlex
from datetime import datetime, timedelta

from airflow import DAG
from airflow.models.baseoperator import chain
from airflow.operators.bash import BashOperator

CDRFLOW = shlex.quote(os.environ.get("CDRFLOW_BIN", "cdrflow"))

STEPS = [
    ("check_data_quality", "Fail when the day has fewer raw events than the minimum"),
    ("run_batch_processing", "daily_stats and hourly_stats from raw_events (replaces the day's rows)"),
    ("verify_results", "Statistics equal a recomputation; raw events = windows + late events"),
    ("send_summary", "The day's summary as JSON (log and XCom)"),
    ("cleanup_old_data", "Remove raw events older than the retention"),
]

with DAG(
    dag_id="cdrflow_daily_batch",
    description="Seed 003's daily batch over cdrflow's raw events",
    schedule="0 1 * * *",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={
        "owner": "cdrflow",
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
    },
    tags=["cdrflow", "seed-003"],
) as dag:
    tasks = [
        BashOperator(
            task_id=step,
            doc=doc,
            bash_command=f"{CDRFLOW} daily --step {step} --date {{{{ ds }}}} --retries 0",
            # cdrflow's settings (DATABASE_URL, CDRFLOW_DATA_DIR, ...) from the worker.
            append_env=True,
        )
        for step, doc in STEPS
    ]
    chain(*tasks)
