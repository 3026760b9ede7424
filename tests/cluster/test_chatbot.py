"""The chatbot on the demo's cluster: llama-server's web UI and OpenAI-compatible API on the
main node's network address, for this machine only, behind the API key and, for these
tests, over HTTPS with the self-signed certificate the main role makes. The same deploy
takes the model from an URL (this machine serves the fixture over HTTP on the demo's network)
on a main node without curl: the download installs it first.

This machine is the network's gateway, the one client the demo admits; an outsider is a
container of its own on the same network. The browser test drives Debian's Chromium
through selenium, and its screenshot is kept in tests/output/chatbot/. The demo's plain HTTP
comes back with the next test's deploy, or at the end of the session (conftest.py's
demo_restore); the given key stays."""

from __future__ import annotations

import functools
import http.server as http_server
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import threading
import urllib.request

import fixtures
import pytest
from demo_nodes import INVENTORY, MAIN, TOP, WORKERS, address, node, playbook

KEY_FILE = "/etc/llama-server/api-key"
CERT_FILE = "/etc/llama-server/tls-cert.pem"
GIVEN_PREFIX = "chatbot-test-key-"
PORT = 8080
NETWORK = "llamacpp-demo"
IMAGE = "localhost/llamacpp-node:bookworm"
OUTPUT = TOP / "tests" / "output" / "chatbot"
CHAT = {"messages": [{"role": "user", "content": "What are the three primary colours?"}], "max_tokens": 24,
        "temperature": 0, "seed": 42}
# Every route of llama-server's API that the key guards (the web UI's static files and
# /health are public by design), with a body that would be valid with the key.
GUARDED = [("GET", "/v1/models", None), ("GET", "/props", None), ("GET", "/slots", None), ("GET", "/metrics", None),
           ("POST", "/v1/chat/completions", CHAT), ("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2}),
           ("POST", "/completion", {"prompt": "Hi", "n_predict": 2}), ("POST", "/tokenize", {"content": "Hi"})]


TLS: dict = {}
# The demo's model under another name, so that the deploy downloads it.
URL_MODEL = "gemma-3-270m-q4_k_m-from-url.gguf"
MODELS_DIR = "/var/lib/llama.cpp/models"
GATEWAY = "10.89.77.1"  # inventories/local: llamacpp_local_gateway, this machine on the demo's network


def http(method: str, url: str, key: str | None = None, body=None, timeout: float = 120) -> tuple[int, bytes]:
    """One request from this machine; HTTPS is checked against the main node's certificate."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=TLS.get("context")) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def read_key() -> str:
    return node(MAIN).check_output(f"cat {KEY_FILE}").strip()


@pytest.fixture(name="given_key", scope="module")
def fixture_given_key(demo_cluster, demo_restore, tmp_path_factory):
    """A key given as a role setting and HTTPS, deployed with services.yml at -v: the run that
    must not show the key. The generated key it replaces is checked first."""
    demo_restore.take()
    generated = read_key()
    if generated.startswith(GIVEN_PREFIX):  # an earlier run of this module gave it already
        key = generated
    else:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", generated), "the generated key is 32 random bytes, urlsafe"
        key = GIVEN_PREFIX + generated[:12][::-1]
    served = tmp_path_factory.mktemp("served")
    (served / URL_MODEL).symlink_to(fixtures.model_path())
    handler = functools.partial(http_server.SimpleHTTPRequestHandler, directory=str(served))
    server = http_server.ThreadingHTTPServer((GATEWAY, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    node(MAIN).check_output("apt-get remove -y -q curl >/dev/null && ! command -v curl")
    model = {"url": f"http://{GATEWAY}:{server.server_address[1]}/{URL_MODEL}", "sha256": fixtures.MODEL_SHA256}
    try:
        run = playbook("playbooks/services.yml", INVENTORY, "-v", "-e", json.dumps({
            "llamacpp_main_server_api_key": key, "llamacpp_main_server_tls": True,
            "llamacpp_main_model_files": [model]}))
    finally:
        server.shutdown()
        server.server_close()
    assert run.rc == 0, run.output[-4000:]
    assert key not in run.output and generated not in run.output
    assert read_key() == key
    URL_RUN["changed"] = {task for task in URL_TASKS if run.results(task).get(MAIN, {}).get("changed")}
    ca = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.write_text(node(MAIN).check_output(f"cat {CERT_FILE}") + "\n")
    TLS["context"] = ssl.create_default_context(cafile=str(ca))
    yield key
    TLS.clear()
    # llama-server keeps its open copy until the next deploy replaces the model.
    node(MAIN).check_output(f"rm -f {MODELS_DIR}/{URL_MODEL}")


URL_RUN: dict = {}
# "Install curl": role service_unit's package install, named for what it installs.
URL_TASKS = ("Install curl", "Download, resuming a partial download",
             "Move the verified download into place")


@pytest.fixture(name="base_url", scope="module")
def fixture_base_url(given_key):
    return f"https://{address(MAIN)}:{PORT}"


def test_a_model_given_by_url_is_downloaded_after_curl_is_installed(given_key):
    main = node(MAIN)
    assert URL_RUN["changed"] == set(URL_TASKS)
    assert main.package("curl").is_installed
    assert main.check_output(f"sha256sum {MODELS_DIR}/{URL_MODEL}").split()[0] == fixtures.MODEL_SHA256
    assert not main.file(f"{MODELS_DIR}/{URL_MODEL}.part").exists
    assert f"{MODELS_DIR}/{URL_MODEL}" in main.check_output("systemctl cat llama-server")


def test_the_key_is_roots_alone_and_never_on_a_command_line(given_key):
    main = node(MAIN)
    assert main.file(KEY_FILE).user == "root" and main.file(KEY_FILE).mode == 0o600
    assert main.file("/etc/llama-server").mode == 0o700
    unit = main.check_output("systemctl cat llama-server")
    assert f"LoadCredential=api-key:{KEY_FILE}" in unit and given_key not in unit
    args = main.check_output("ps -eo args")
    assert "--api-key-file /run/credentials/llama-server.service/api-key" in args
    assert given_key not in args
    journal = main.check_output("journalctl --no-pager -o cat -u llama-server -u llamacpp-api-firewall")
    assert journal and given_key not in journal


def test_every_guarded_endpoint_refuses_no_key_and_a_wrong_key(base_url, given_key):
    for method, path, body in GUARDED:
        for key in (None, "not-the-key-0123456789", given_key[:-1]):
            status, answer = http(method, base_url + path, key, body)
            assert status == 401, f"{method} {path} with key {key!r}: HTTP {status} {answer[:200]!r}"
            assert json.loads(answer)["error"]["type"] == "authentication_error"
    assert http("GET", base_url + "/health")[0] == 200


def test_the_api_speaks_only_https_with_the_nodes_certificate(base_url, given_key):
    """The certificate names the node's address (the check above would fail otherwise) and
    127.0.0.1; the key is root's; plain HTTP on the port gets no answer."""
    main = node(MAIN)
    assert main.file("/etc/llama-server/tls-key.pem").mode == 0o600
    names = main.check_output(f"openssl x509 -in {CERT_FILE} -noout -ext subjectAltName")
    assert f"IP Address:{address(MAIN)}" in names and "IP Address:127.0.0.1" in names, names
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(base_url.replace("https://", "http://") + "/health", timeout=10)
    assert http("GET", base_url + "/v1/models", given_key)[0] == 200


def test_the_openai_api_answers_with_the_key(base_url, given_key):
    status, body = http("GET", base_url + "/v1/models", given_key)
    assert status == 200 and json.loads(body)["data"][0]["id"].endswith(URL_MODEL)
    status, body = http("POST", base_url + "/v1/chat/completions", given_key, CHAT)
    assert status == 200, body[:300]
    answer = json.loads(body)
    assert answer["choices"][0]["message"]["content"].strip()
    assert answer["usage"]["completion_tokens"] == 24 and answer["usage"]["prompt_tokens"] > 5
    status, body = http("POST", base_url + "/v1/completions", given_key,
                        {"prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 6, "temperature": 0})
    assert status == 200 and "9" in json.loads(body)["choices"][0]["text"]
    status, body = http("GET", base_url + "/props", given_key)
    props = json.loads(body)
    # The base model has no chat template: the role's transcript template is in use, and
    # the 4096 tokens of context are split over the 4 slots.
    assert "Assistant:" in props["chat_template"]
    assert props["total_slots"] == 4 and props["default_generation_settings"]["n_ctx"] == 1024


def test_metrics_count_the_tokens_served(base_url, given_key):
    def counters():
        status, body = http("GET", base_url + "/metrics", given_key)
        assert status == 200
        found = dict(re.findall(r"^(llamacpp:[a-z_]+_total) ([0-9.e+]+)$", body.decode(), re.M))
        return {name: float(value) for name, value in found.items()}

    before = counters()
    assert {"llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total"} <= set(before), before
    assert http("POST", base_url + "/completion", given_key, {"prompt": "Hello", "n_predict": 5})[0] == 200
    after = counters()
    assert after["llamacpp:tokens_predicted_total"] >= before["llamacpp:tokens_predicted_total"] + 5


def test_an_outsider_on_the_network_cannot_reach_the_api(base_url):
    """A container on the cluster's network, not on the allowlist: its connection to the API
    port is dropped (the workers' RPC port is not its either), while this machine gets in."""
    probe = ("import socket, sys\nfor port in map(int, sys.argv[2:]):\n    s = socket.socket()\n    s.settimeout(3)\n"
             "    try:\n        s.connect((sys.argv[1], port)); print(port, 'open')\n"
             "    except OSError as exc:\n        print(port, type(exc).__name__)\n    s.close()")
    main_ip = address(MAIN)
    out = subprocess.run(["podman", "run", "--rm", "--network", NETWORK, IMAGE, "python3", "-c", probe, main_ip,
                          str(PORT)], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.split() == [str(PORT), "TimeoutError"], out
    rpc = subprocess.run(["podman", "run", "--rm", "--network", NETWORK, IMAGE, "python3", "-c", probe,
                          address(WORKERS[0]), "50052"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert rpc.split() == ["50052", "TimeoutError"], rpc
    assert http("GET", base_url + "/health")[0] == 200
    dropped = node(MAIN).check_output("nft list table inet llamacpp_api")
    assert int(re.search(r"counter packets (\d+)", dropped).group(1)) > 0


def test_generate_sends_prompts_concurrently_and_chats(given_key):
    run = playbook("tests/cluster/chatbot.yml", INVENTORY, "-v")
    assert run.rc == 0, run.output[-5000:]
    assert given_key not in run.output
    batch = run.results("Ask four questions at once")[MAIN]
    assert [r["prompt"] for r in batch["results"]] == ["1, 2, 3, 4, 5, 6, 7, 8,", "10, 20, 30, 40,",
                                                       "Monday, Tuesday, Wednesday,", "a, b, c, d, e,"]
    assert "9" in batch["results"][0]["text"] and "50" in batch["results"][1]["text"]
    assert all(r["tokens_predicted"] == 12 for r in batch["results"])
    chat = run.results("Chat")[MAIN]
    assert chat["text"].strip() and chat["mode"] == "server"
    # All four were in flight together: the server's slots overlapped them.
    walls = [r["timings"]["wall_s"] for r in batch["results"]]
    assert batch["timings"]["wall_s"] < sum(walls) * 0.75, (batch["timings"], walls)


def test_the_web_ui_answers_a_prompt_in_a_browser(base_url, given_key):
    assert shutil.which("chromedriver"), "Debian's chromium-driver is missing; run 'make platform-tests'"
    from selenium import webdriver  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.common.keys import Keys  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.support import expected_conditions as ec  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel

    OUTPUT.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    # The self-signed certificate is not in Chromium's trust store: the browser takes it as a
    # user who accepted it would (the requests above check it against the node's CA file).
    options.set_capability("acceptInsecureCerts", True)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,860", f"--user-data-dir={OUTPUT / 'profile'}"):
        options.add_argument(argument)
    shutil.rmtree(OUTPUT / "profile", ignore_errors=True)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(base_url + "/")
        # Without a key the UI cannot read the server's properties and asks for one.
        wait.until(ec.element_to_be_clickable((By.XPATH, "//button[contains(., 'Enter API Key')]"))).click()
        field = wait.until(ec.visibility_of_element_located((By.ID, "api-key-input")))
        field.send_keys(given_key + Keys.ENTER)
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "textarea[placeholder='Type a message...']")))
        box.send_keys("What are the three primary colours?")
        browser.find_element(By.XPATH, "//button[@type='submit']").click()
        answer, done, deadline = "", False, time.monotonic() + 120
        while time.monotonic() < deadline and not done:
            time.sleep(1)
            messages = browser.find_elements(By.CSS_SELECTOR, "[aria-label='Assistant message with actions']")
            answer = messages[-1].text if messages else ""
            # While the answer streams, a stop button stands where the send button was.
            done = bool(answer) and bool(browser.find_elements(By.XPATH, "//button[@type='submit']"))
        # The conversation from its start: every scrolled pane back to the top.
        browser.execute_script("document.querySelectorAll('*').forEach(e => { if (e.scrollTop) e.scrollTop = 0; })")
        time.sleep(0.5)
        browser.save_screenshot(str(OUTPUT / "webui-chat.png"))
    finally:
        browser.quit()
    assert done, f"no finished answer in the web UI within 120 s: {answer!r}"
    # The answer, then its statistics: the model, the tokens, the time, the speed.
    assert answer.split("\n")[0].strip() and re.search(r"\b\d+ tokens\b", answer), answer
    print(f"web UI answer: {answer[:200]!r}; screenshot {OUTPUT / 'webui-chat.png'}")
