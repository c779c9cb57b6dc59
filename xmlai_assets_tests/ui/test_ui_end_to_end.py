"""The UI path end to end: `dagster dev` (webserver and daemon) on a loopback port over a
temporary instance and data folder, driven through GraphQL as the UI drives it, and looked at in
headless Chromium (Debian's chromium and chromium-driver; no browser is downloaded).

Set XMLAI_UI_SCREENSHOTS=DIR to keep the screenshots (the README's comes from here).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from xmlai_assets.model.config import BASELINES
from xmlai_assets.paths import PROJECT_ROOT
from xmlai_assets.synth import generate_timeline

pytestmark = pytest.mark.ui

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
LOCATION, REPOSITORY = "xmlai_assets", "__repository__"
DOWNSTREAM_OF_FILES = [
    "master_training_data",
    "train_data",
    "val_data",
    "test_data",
    "scalers",
    "train_sequences",
    "val_sequences",
    "test_sequences",
    "trained_model",
]
QUICK = yaml.safe_load((PROJECT_ROOT / "configs" / "train_quick.yaml").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int, process: subprocess.Popen, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log = log

    def graphql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def wait(self, what: str, condition, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"dagster dev exited:\n{self.log_tail()}"
            try:
                value = condition()
            except OSError:
                value = None
            if value:
                return value
            time.sleep(1)
        pytest.fail(f"timed out waiting for {what}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def server(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        message = "chromium and chromium-driver are needed (make test installs them as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for seed in range(4):
        generate_timeline(seed, seconds=10, name=f"clip {seed}").write(data / "timelines")
    # a broken export beside the good ones: its partition must show failed, the rest not
    (data / "timelines" / "broken.xml").write_text("<xmeml version='4'><sequence><broken")
    outside = tmp_path / "outside"
    outside.mkdir()
    generate_timeline(9, seconds=10, name="outside").write(outside)
    port, log = _free_port(), tmp_path / "dagster-dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(home), "XMLAI_DATA_DIR": str(data)}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml")]
            + ["--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped whole below
        )
    srv = Server(port, process, log)
    srv.data = data
    srv.outside = outside
    try:
        srv.wait(
            "the code location to load",
            lambda: srv.graphql(
                "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
            )["repositoriesOrError"]["nodes"],
            timeout=180,
        )
        yield srv
    finally:
        # dagster dev in the background ignores a plain SIGTERM: stop its whole group
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # children of an exited leader, if any


MATERIALIZED_PARTITIONS = """
query { assetOrError(assetKey: {path: ["timeline_frames"]}) {
  ... on Asset { assetMaterializations(limit: 100) { partition runId } } } }
"""
LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } }
} }
"""
RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
PARTITION_STATS = """
query { assetNodeOrError(assetKey: {path: ["timeline_frames"]}) {
  ... on AssetNode { partitionStats { numMaterialized numFailed } } } }
"""
ADD_PARTITION = """
mutation($repo: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: "timeline_files",
                      partitionKey: $key) { __typename } }
"""
LATEST_METADATA = """
query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations(limit: 1) { metadataEntries {
    label
    ... on IntMetadataEntry { intValue }
    ... on FloatMetadataEntry { floatValue }
    ... on PathMetadataEntry { path }
    ... on BoolMetadataEntry { boolValue }
  } } } } }
"""


def _run_to_end(server, params) -> str:
    launched = server.graphql(LAUNCH, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def finished():
        status = server.graphql(RUN_STATUS, id=run_id)["runOrError"]["status"]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    return server.wait("the run to finish", finished, timeout=600)


STALE_STATUS = """
query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) {
  ... on AssetNode { staleStatus } } }
"""


def _stale(server) -> dict[str, str]:
    """Each asset's stale status as the UI's GraphQL reports it."""
    return {
        key: server.graphql(STALE_STATUS, path=[key])["assetNodeOrError"]["staleStatus"]
        for key in DOWNSTREAM_OF_FILES
    }


def _frames_partitions(server) -> dict[str, list[str]]:
    records = server.graphql(MATERIALIZED_PARTITIONS)["assetOrError"]["assetMaterializations"]
    runs: dict[str, list[str]] = {}
    for record in records:
        runs.setdefault(record["partition"], []).append(record["runId"])
    return runs


def _metadata(server, key: str) -> dict:
    record = server.graphql(LATEST_METADATA, path=[key])["assetOrError"]["assetMaterializations"]
    entries = record[0]["metadataEntries"]
    return {
        e["label"]: e.get("intValue", e.get("floatValue", e.get("path", e.get("boolValue"))))
        for e in entries
    }


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _page_shows(driver, url: str, texts: list[str], screenshot: Path) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)

    def body_text(d):
        text = d.find_element(By.TAG_NAME, "body").text
        return text if all(t in text for t in texts) else None

    try:
        WebDriverWait(driver, 60).until(body_text)
    except TimeoutException:
        driver.save_screenshot(str(screenshot))
        missing = [t for t in texts if t not in driver.find_element(By.TAG_NAME, "body").text]
        pytest.fail(f"{url} does not show {missing} (screenshot: {screenshot})")
    time.sleep(2)  # let the graph finish laying out before the picture
    driver.save_screenshot(str(screenshot))


def test_files_appear_materialize_and_show_in_the_ui(server, tmp_path):
    # 1. the sensor (running by default) gives each file a partition and parses it; the
    # broken file's partition is failed, not materialized
    files = {f"clip {i}.xml" for i in range(4)}
    server.wait(
        "the sensor's frames runs",
        lambda: files <= set(_frames_partitions(server)),
        timeout=240,
    )
    stats = server.wait(
        "the broken file's partition to fail",
        lambda: (
            (s := server.graphql(PARTITION_STATS)["assetNodeOrError"]["partitionStats"])[
                "numFailed"
            ]
            == 1
            and s
        ),
        timeout=240,
    )
    assert stats["numMaterialized"] == 4 and "broken.xml" not in _frames_partitions(server)
    before = _frames_partitions(server)
    # a file dropped in while the server runs: exactly its partition appears and materializes
    generate_timeline(10, seconds=10, name="dropped later").write(server.data / "timelines")
    server.wait(
        "the dropped file's partition",
        lambda: "dropped later.xml" in _frames_partitions(server),
        timeout=240,
    )
    after = _frames_partitions(server)
    assert {k: v for k, v in after.items() if k != "dropped later.xml"} == before
    assert len(after["dropped later.xml"]) == 1

    # a key that is a path, added as the UI (or anyone reaching its GraphQL) can: its run fails
    # and nothing outside the folders is read or written
    repo = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    hostile = f"../../{server.outside.name}/outside.xml"
    before_outside = sorted(server.outside.iterdir())
    server.graphql(ADD_PARTITION, repo=repo, key=hostile)
    status = _run_to_end(
        server,
        {
            "selector": {
                **repo,
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["timeline_frames"]}],
            },
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": hostile}]},
            "mode": "default",
        },
    )
    assert status == "FAILURE"
    assert sorted(server.outside.iterdir()) == before_outside
    assert all(p.resolve().is_relative_to(server.data.resolve()) for p in server.data.rglob("*"))

    # 2. one click on the quick_model job: its launchpad config is the quick preset
    status = _run_to_end(
        server,
        {"selector": {**repo, "jobName": "quick_model"}, "runConfigData": QUICK, "mode": "default"},
    )
    assert status == "SUCCESS", server.log_tail()
    # the master keeps every good file's rows and lists the broken one
    assert set(pd.read_csv(server.data / "master_training_data.csv")["video_id"]) == {
        "clip 0",
        "clip 1",
        "clip 2",
        "clip 3",
        "dropped later",
    }

    # 3. the recorded metadata, read back through GraphQL
    master = _metadata(server, "master_training_data")
    rows = len(pd.read_csv(server.data / "master_training_data.csv"))
    assert master["dagster/row_count"] == rows
    assert master["video_count"] == 5
    model = _metadata(server, "trained_model")
    assert 1 <= model["epochs_run"] <= QUICK["ops"]["trained_model"]["config"]["epochs"]
    assert model["version"] == str(server.data / "models" / "v0001")
    val_loss = model["val_loss"]
    baselines = [model[f"{name}_val_loss"] for name in BASELINES]
    assert val_loss > 0 and min(baselines) > 0
    # the first version is the champion exactly when it beats every baseline
    promoted = model["promoted"]
    assert promoted is (val_loss < min(baselines))
    champions = server.graphql(LATEST_METADATA, path=["champion_model"])["assetOrError"]
    assert len(champions["assetMaterializations"]) == (1 if promoted else 0)
    assert _stale(server) == dict.fromkeys(DOWNSTREAM_OF_FILES, "FRESH")

    # a file dropped in once the model is trained: once the sensor has parsed it, the master
    # and everything after it, the model included, read stale in the UI
    generate_timeline(11, seconds=10, name="arrived after training").write(
        server.data / "timelines"
    )
    server.wait(
        "the new file's parse",
        lambda: "arrived after training.xml" in _frames_partitions(server),
        timeout=240,
    )
    server.wait(
        "the master and all after it to read stale",
        lambda: _stale(server) == dict.fromkeys(DOWNSTREAM_OF_FILES, "STALE"),
        timeout=120,
    )

    # 4. what a person sees: the lineage and the model's page with its metric
    shots = Path(os.environ.get("XMLAI_UI_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    driver = _browser()
    try:
        driver.get(f"{server.url}/runs")
        time.sleep(3)
        from selenium.webdriver.common.by import By

        for button in driver.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            button.click()  # the first-visit newsletter dialog
        _page_shows(
            driver,
            f"{server.url}/assets/trained_model?view=lineage&lineageScope=upstream&lineageDepth=10",
            ["timeline_xml", "timeline_frames", "train_data", "scalers", "train_sequences"]
            + ["val_sequences", "trained_model", "ingest", "preprocess", "train"],
            shots / "asset_graph.png",
        )
        _page_shows(
            driver,
            f"{server.url}/assets/trained_model",
            ["trained_model", "val_loss", repr(val_loss), "fair_copy_val_loss", "promoted"],
            shots / "trained_model.png",
        )
        # the failed partition, as the partitions tab counts it
        _page_shows(
            driver,
            f"{server.url}/assets/timeline_frames?view=partitions",
            ["Failed (1)", "broken.xml"],
            shots / "timeline_frames_partitions.png",
        )
        if promoted:  # the champion: its own asset, naming the version that earned it
            champion_texts = ["champion_model", "version_name", "v0001", "previous_champion"]
            _page_shows(
                driver,
                f"{server.url}/assets/champion_model",
                champion_texts,
                shots / "champion.png",
            )
    finally:
        driver.quit()
    assert (shots / "asset_graph.png").stat().st_size > 10_000
