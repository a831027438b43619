"""The broker's jars, fetched from Maven Central by ``infra/kafka/pom.xml``.

Maven Central is the one place this project may get Kafka from (no distribution tarball is
committed or downloaded), and Maven already knows the broker's full runtime classpath.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from infra.paths import Layout
from infra.process import find_tool, run

log = logging.getLogger(__name__)

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
MAVEN_TIMEOUT_S = 900.0


async def resolve_jars(layout: Layout, version: str) -> Path:
    """Make sure ``kafka-libs/<version>`` holds the broker's jars.

    1. If the folder holds the last jar the pom added (kafka-tools, for the lag comparison),
       it is complete: it only ever appears by the rename in step 3. A folder from an older
       pom lacks it and is resolved again.
    2. Otherwise (the caller holds the data dir's lock) Maven copies ``kafka_2.13`` and its
       runtime dependencies into a temporary sibling folder.
    3. The temporary folder is renamed into place, so an interrupted download is redone
       instead of leaving a broker with half its classpath.
    """
    libs = layout.kafka_libs(version)
    if (libs / f"kafka-tools-{version}.jar").exists():
        return libs
    for stale in libs.parent.glob(f"{version}.partial-*"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = libs.with_name(f"{version}.partial-{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log.info("resolving Kafka %s jars with Maven into %s", version, libs)
    started = time.monotonic()
    await run(
        [
            find_tool("mvn", "MAVEN_HOME"),
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            f"-Dkafka.version={version}",
            "-DincludeScope=runtime",
        ],
        limit_s=MAVEN_TIMEOUT_S,
        what=f"resolving Kafka {version} with Maven",
    )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    log.info("resolved Kafka %s jars in %.1f s", version, time.monotonic() - started)
    return libs
