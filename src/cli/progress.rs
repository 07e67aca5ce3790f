//! Progress bars: a thread polls the library's atomic counters and draws an indicatif bar, so the
//! library never knows whether anyone is watching.

use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Ticker {
    /// Dropping it ends the ticker at once.
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Calls `update(bar)` ten times a second until dropped; a no-op when `show` is false.
    pub fn start(
        show: bool,
        template: &str,
        update: impl Fn(&ProgressBar) + Send + 'static,
    ) -> Ticker {
        if !show {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::spawn(move || {
            update(&bar);
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(100))
            {
                update(&bar);
            }
            bar.finish_and_clear();
        });
        Ticker {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
