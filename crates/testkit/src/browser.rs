//! A headless Chromium for the web UI's tests and benches, driven through its WebDriver by
//! Selenium (`browser/driver.py`; scripts/browser-env installs Chromium, its driver and
//! Selenium). One JSON command per line to the driver, one JSON answer back.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::DEADLINE;
use crate::kubo::repo_root;

/// One headless Chromium pointed at a node on loopback.
#[derive(Debug)]
pub struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    shots: PathBuf,
    name: String,
    base: String,
}

impl Browser {
    /// Starts Chromium for the node whose API is on `port`; screenshots are named after
    /// `name` and saved under `$BACALHAU_TEST_ARTIFACTS` (default `target/ui-screenshots`).
    pub fn start(name: &str, port: u16) -> Result<Browser> {
        let env =
            Command::new(repo_root().join("scripts/browser-env")).output().context("running scripts/browser-env")?;
        if !env.status.success() {
            bail!("scripts/browser-env: {}", String::from_utf8_lossy(&env.stderr));
        }
        let python = String::from_utf8_lossy(&env.stdout).trim().to_owned();
        let mut child = Command::new(python)
            .arg(repo_root().join("crates/testkit/browser/driver.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the browser driver")?;
        let input = child.stdin.take().context("driver stdin")?;
        let output = BufReader::new(child.stdout.take().context("driver stdout")?);
        let shots = std::env::var_os("BACALHAU_TEST_ARTIFACTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/ui-screenshots"));
        std::fs::create_dir_all(&shots)?;
        let mut b =
            Browser { child, input, output, shots, name: name.to_owned(), base: format!("http://127.0.0.1:{port}") };
        let ready = b.answer().map_err(anyhow::Error::msg)?;
        if ready != "ready" {
            bail!("the browser driver said {ready}");
        }
        Ok(b)
    }

    fn answer(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        self.output.read_line(&mut line).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("driver said {line:?}: {e}"))?;
        if v["ok"] == true { Ok(v["value"].clone()) } else { Err(v["error"].as_str().unwrap_or("?").to_owned()) }
    }

    /// Sends a command; a failure saves a screenshot and panics with the driver's error (these
    /// are test steps).
    pub fn run(&mut self, cmd: Value) -> Value {
        if let Err(e) = writeln!(self.input, "{cmd}") {
            panic!("browser driver gone: {e}");
        }
        match self.answer() {
            Ok(v) => v,
            Err(e) => {
                self.shot("failure");
                panic!("browser: {cmd}: {e}");
            }
        }
    }

    /// Loads a path of the node (`/`, `/#/nodes`).
    pub fn open(&mut self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.run(json!({"op": "open", "url": url}));
    }

    /// Waits until the elements matching `css` contain `text`; returns their text.
    pub fn wait_text(&mut self, css: &str, text: &str) -> String {
        let secs = DEADLINE.as_secs();
        self.run(json!({"op": "wait_text", "css": css, "text": text, "timeout": secs}))
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The text of the elements matching `css`.
    pub fn text(&mut self, css: &str) -> String {
        self.run(json!({"op": "text", "css": css})).as_str().unwrap_or("").to_owned()
    }

    /// Clicks the first element matching `css`.
    pub fn click(&mut self, css: &str) {
        self.run(json!({"op": "click", "css": css}));
    }

    /// Clicks, then accepts the confirmation dialog the click opens.
    pub fn click_and_confirm(&mut self, css: &str) {
        self.run(json!({"op": "click", "css": css, "accept": true}));
    }

    /// Types into an input.
    pub fn type_into(&mut self, css: &str, text: &str) {
        self.run(json!({"op": "type", "css": css, "text": text}));
    }

    /// Runs a script in the page and returns its value.
    pub fn eval(&mut self, js: &str) -> Value {
        self.run(json!({"op": "eval", "js": js}))
    }

    /// Polls a script until it returns something other than `null`, within the test deadline.
    pub fn eval_until(&mut self, js: &str) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let v = self.eval(js);
            if !v.is_null() || Instant::now() > end {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a screenshot as `<name>-<what>.png`.
    pub fn shot(&mut self, what: &str) {
        let path = self.shots.join(format!("{}-{what}.png", self.name));
        if writeln!(self.input, "{}", json!({"op": "screenshot", "path": path})).is_ok() {
            let _ = self.answer();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "{}", json!({"op": "quit"}));
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}
