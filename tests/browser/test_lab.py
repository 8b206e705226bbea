"""JupyterLab as a student meets it: `make lab`, a lesson opened in headless Chromium, Run All.

The server is started by `make lab` itself (on a free loopback port, with a token, through the
JUPYTER_PORT and JUPYTER_TOKEN variables it reads), with a fresh Jupyter configuration folder so
no personal settings or saved layout change what the test sees. Lesson 00 (the fastest) runs to
the end; then a cell appended in the browser drives the course's progress bar and the test checks
that it rendered as a live widget, not as the widget's text fallback. Autosave is off and nothing
is saved: the lesson file on disk must be unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from course_lib.data import ROOT

LESSON = "notebooks/00_welcome.ipynb"
RUN_ALL_TIMEOUT = 180  # seconds; the lesson states its own runtime (well under a minute)
# the test's own environment (conftest.py) sets these for nbval; a student's shell has none of them
# the lab runs as a student's would: checks report (COURSE_CHECKS unset), progress bars are widgets
NOT_FROM_TESTS = ("COURSE_PLAIN_PROGRESS", "COURSE_BLOCK_NETWORK", "MPLBACKEND", "COURSE_CHECKS")
# lab settings of a quiet, offline first start; autosave off so the test never writes the lesson
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
WIDGET_FALLBACKS = (
    "HBox(children=",
    "FloatProgress(",
    "IntProgress(",
    "Loading widget",
    "Error displaying widget",
    "IProgress not found",
)

JS_CODE_CELLS = """
return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')]
  .map(c => ({
    prompt: (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
    source: (c.querySelector('.jp-InputArea-editor') || {}).textContent || '',
    stderr: [...c.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(o => o.textContent),
    output: ((c.querySelector('.jp-OutputArea') || {}).textContent || '').replace(/\u2007/g, ' '),
    widgets: c.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
    progress: c.querySelectorAll('.jp-OutputArea-output .widget-hprogress').length,
    tables: c.querySelectorAll('.jp-OutputArea-output.jp-RenderedHTMLCommon table').length,
  }));
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(folder: Path) -> None:
    """A fresh Jupyter config folder: lab settings above; root allowed when the test runs as root."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        server = {"ServerApp": {"allow_root": True}}
        (folder / "jupyter_server_config.json").write_text(json.dumps(server))
    for plugin, values in LAB_SETTINGS.items():
        path = folder / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture
def lab_server(tmp_path):
    """`make lab` on a free loopback port with a random token; yields the server's base URL."""
    config = tmp_path / "jupyter-config"
    config.mkdir()
    _write_config(config)
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k not in NOT_FROM_TESTS}
    env.update(JUPYTER_PORT=str(port), JUPYTER_TOKEN=token, JUPYTER_CONFIG_DIR=str(config))
    env["JUPYTER_PORT_RETRIES"] = "0"  # the port we chose, or fail
    log_path = tmp_path / "lab.log"
    with open(log_path, "w") as log:
        # -o: use the .venv as it is (the tests already run in it), never reinstall from here
        server = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed", "lab"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"`make lab` did not serve {base} (exit code {server.poll()}):\n"
                        + log_path.read_text()[-3000:]
                    )
                time.sleep(0.5)
        yield base, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server stops its kernels on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _cells(browser) -> list[dict]:
    return browser.execute_script(JS_CODE_CELLS)


def _wait(browser, condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.5).until(
        lambda b: condition(b), message=f"timed out after {timeout:.0f} s waiting for {what}"
    )


def _idle(browser) -> bool:
    indicator = browser.find_elements("css selector", ".jp-Notebook-ExecutionIndicator")
    return bool(indicator) and indicator[0].get_attribute("data-status") == "idle"


def _click_menu(browser, menu: str, command: str) -> None:
    from selenium.webdriver.common.by import By

    label = f"//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space()='{menu}']"
    browser.find_element(By.XPATH, label).click()
    item = f".lm-Menu-item[data-command='{command}']"
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, item), 10, f"menu item {command}")
    browser.find_element(By.CSS_SELECTOR, item).click()


def _traceback(texts: list[str]) -> str | None:
    for text in texts:
        if "Traceback (most recent call last)" in text or re.search(
            r"^\w+(Error|Exception)\b", text, re.M
        ):
            return text[-1500:]
    return None


@pytest.mark.timeout(420)
def test_lesson_runs_in_jupyterlab_with_live_progress_widget(lab_server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    base, token = lab_server
    lesson = ROOT / LESSON
    before = hashlib.sha256(lesson.read_bytes()).hexdigest()
    code_cells = sum(
        1
        for c in json.loads(lesson.read_text(encoding="utf-8"))["cells"]
        if c["cell_type"] == "code" and "".join(c["source"]).strip()
    )

    browser.get(f"{base}/lab/tree/{LESSON}?token={token}")
    _wait(browser, lambda b: len(_cells(b)) == code_cells, 90, f"{LESSON} to open")
    _wait(browser, _idle, 90, "the kernel to start")
    dialogs = browser.find_elements("css selector", ".jp-Dialog")
    assert not dialogs, f"a dialog opened with the lesson: {dialogs[0].text!r}"

    # Run ▸ Run All Cells, then wait until no cell is queued or running
    start = time.monotonic()
    _click_menu(browser, "Run", "runmenu:run-all")
    _wait(
        browser,
        lambda b: _idle(b) and all("*" not in c["prompt"] for c in _cells(b)),
        RUN_ALL_TIMEOUT,
        "Run All to finish",
    )
    _wait(browser, lambda b: _idle(b), 30, "the kernel to settle")
    seconds = time.monotonic() - start
    cells = _cells(browser)
    not_run = [c["source"][:80] for c in cells if not re.search(r"\[\d+\]", c["prompt"])]
    errors = [tb for c in cells if (tb := _traceback(c["stderr"]))]
    assert not errors, f"{LESSON} printed an error in JupyterLab:\n{errors[0]}"
    assert not not_run, f"Run All stopped before these cells: {not_run}"
    assert any(c["tables"] for c in cells), "the lesson's DataFrames did not render as HTML tables"
    print(f"{LESSON}: {len(cells)} code cells ran in {seconds:.0f} s in JupyterLab")

    # a scratch cell at the end drives the course's progress bar, as every training loop does
    last = browser.find_elements("css selector", ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell")[
        -1
    ]
    last.click()
    keys = ActionChains(browser).send_keys(Keys.ESCAPE).send_keys("b").send_keys(Keys.ENTER)
    keys.perform()
    code = (
        "import time\n"
        "from course_lib.training import progress_bar\n"
        "for _ in progress_bar(range(40), 'browser check'): time.sleep(0.02)"
    )
    ActionChains(browser).send_keys(code).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(
        Keys.SHIFT
    ).perform()

    def finished(b):
        scratch = [c for c in _cells(b) if "browser check" in c["source"]]
        return scratch and re.search(r"\[\d+\]", scratch[0]["prompt"]) and _idle(b) and scratch[0]

    scratch = _wait(browser, finished, 60, "the progress-bar cell to run")
    assert not _traceback(scratch["stderr"]), f"the progress-bar cell failed:\n{scratch['stderr']}"
    fallback = [t for t in WIDGET_FALLBACKS if t in scratch["output"]]
    assert not fallback, (
        f"the progress bar rendered as text, not as a widget: {scratch['output']!r}"
    )
    assert scratch["progress"] >= 1, (
        f"no progress-bar widget in the output (widgets: {scratch['widgets']}): "
        f"{scratch['output']!r}"
    )
    assert "browser check" in scratch["output"] and "40/40" in scratch["output"], (
        f"the progress bar did not reach 40/40: {scratch['output']!r}"
    )

    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, "errors in the browser console:\n" + "\n".join(severe[:10])
    assert hashlib.sha256(lesson.read_bytes()).hexdigest() == before, (
        f"{LESSON} changed on disk while the test ran (autosave is off: something saved it)"
    )
