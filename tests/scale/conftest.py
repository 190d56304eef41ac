"""One Spark session for the whole run, shared by every ``spark`` test module."""

from __future__ import annotations

import shutil

import pytest

from support import require


@pytest.fixture(scope="session")
def spark():
    require(shutil.which("java") is not None, "Spark needs Java (a JDK 17 on PATH)")
    pytest.importorskip("pyspark")
    from crowdloop.scale.spark import spark_session

    session = spark_session("local[2]", driver_memory="2g")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
