"""A headless Chromium driven by Selenium, one JSON command per stdin line, one JSON answer
per stdout line, so the Rust browser tests can drive the web UI step by step.

Commands: {"op": "open", "url"} · {"op": "wait_text", "css", "text", "timeout"} ·
{"op": "wait_gone", "css", "timeout"} · {"op": "text", "css"} · {"op": "click", "css",
"accept": bool} · {"op": "type", "css", "text"} · {"op": "eval", "js"} ·
{"op": "screenshot", "path"} · {"op": "quit"}. Answers: {"ok": true, "value": ...} or
{"ok": false, "error": "..."}. The browser reaches only the loopback node it is pointed at.
"""
import json
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def start():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-default-apps", "--disable-sync",
                "--proxy-server=direct://", "--proxy-bypass-list=*"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def text_of(d, css):
    return "\n".join(e.text for e in d.find_elements(By.CSS_SELECTOR, css))


def wait(timeout, check, what):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            found, last = check()
            if found:
                return last
        except WebDriverException as e:  # the page changed under us: look again
            last = str(e)
        time.sleep(0.1)
    raise TimeoutError(f"{what} not seen within {timeout}s; last: {last!r}")


def run(d, cmd):
    op = cmd["op"]
    if op == "open":
        d.get(cmd["url"])
        return None
    if op == "wait_text":
        want = cmd["text"]
        return wait(cmd.get("timeout", 30), lambda: (want in (t := text_of(d, cmd["css"])), t),
                    f"{want!r} in {cmd['css']}")
    if op == "wait_gone":
        return wait(cmd.get("timeout", 30), lambda: (not d.find_elements(By.CSS_SELECTOR, cmd["css"]), None),
                    f"{cmd['css']} gone")
    if op == "text":
        return text_of(d, cmd["css"])
    if op == "click":
        els = d.find_elements(By.CSS_SELECTOR, cmd["css"])
        if not els:
            raise LookupError(f"nothing matches {cmd['css']}")
        els[0].click()
        if cmd.get("accept"):
            def alert():
                try:
                    a = d.switch_to.alert
                    a.accept()
                    return True, None
                except NoAlertPresentException:
                    return False, None
            wait(10, alert, "a confirmation dialog")
        return None
    if op == "type":
        el = d.find_element(By.CSS_SELECTOR, cmd["css"])
        el.clear()
        el.send_keys(cmd["text"])
        return None
    if op == "eval":
        return d.execute_script(cmd["js"])
    if op == "screenshot":
        d.save_screenshot(cmd["path"])
        return cmd["path"]
    raise ValueError(f"unknown op {op}")


def main():
    d = start()
    try:
        print(json.dumps({"ok": True, "value": "ready"}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                break
            try:
                print(json.dumps({"ok": True, "value": run(d, cmd)}), flush=True)
            except Exception as e:  # reported to the test, which fails with it
                print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
    finally:
        d.quit()


if __name__ == "__main__":
    main()
