"""JVM jars fetched once from Maven Central into the state folder.

Each jar set is a small pom in ``infra/maven/``; ``mvn dependency:copy-dependencies``
copies its runtime closure into ``<state>/jars/<set>-<versions>/``. Nothing resolves
jars at run time (no Ivy, no ``spark.jars.packages``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from config import Settings
from infra.errors import ServiceError

POM_DIR = Path(__file__).resolve().parent / "maven"


def _jar_set(settings: Settings, name: str) -> tuple[Path, dict[str, str]]:
    p = settings.platform
    if name == "spark":
        props = {"spark.version": p.spark.version, "spark.line": p.spark.line, "delta.version": p.spark.delta_version}
    elif name in ("kafka-broker", "kafka-tools"):
        props = {"kafka.version": p.kafka.version}
    else:
        raise ValueError(f"unknown jar set {name!r}")
    return p.jar_dir(name), props


def ensure_jars(settings: Settings, name: str) -> Path:
    """Return the folder holding jar set ``name`` ("spark", "kafka-broker" or "kafka-tools"), fetching it once."""
    folder, props = _jar_set(settings, name)
    marker = folder / ".complete"
    if marker.exists():
        return folder
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("jars: Maven (mvn) is not installed; it fetches the Kafka and Delta jars")
    pom = POM_DIR / ("spark-jars.xml" if name == "spark" else f"{name}.xml")
    tmp = folder.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    argv = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime", *(f"-D{k}={v}" for k, v in props.items())]
    print(f"fetching jar set '{name}' from Maven Central ...", flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServiceError(f"jars: Maven could not fetch '{name}' ({' '.join(argv)}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    marker.write_text("\n".join(sorted(p.name for p in folder.glob("*.jar"))) + "\n")
    return folder
