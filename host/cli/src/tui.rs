//! `oxydra-host tui`: the terminal UI, a client of `serve`'s gateway (ratatui on
//! crossterm). Two sides that share nothing but channels: a tokio task owns the
//! WebSocket ([`net`]), and the UI thread polls the terminal with a short timeout,
//! drains the frames that came in, and draws only when something changed.

mod app;
mod input;
mod markdown;
pub mod net;
mod term;
mod theme;
mod transcript;
mod view;
mod wrap;

use app::App;
use crossterm::event::{self, Event};
use net::{NetConfig, NetEvent, Outgoing};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long the UI waits for a key before looking at the socket's frames again.
const POLL: Duration = Duration::from_millis(20);

/// Run the TUI until the user quits. `user` is shown until the gateway names it.
pub fn run(cfg: NetConfig, user: String) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tui-net")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("could not start the network runtime: {e}"))?;
    let (events_tx, events) = std::sync::mpsc::channel::<NetEvent>();
    let (out, out_rx) = tokio::sync::mpsc::unbounded_channel::<Outgoing>();
    let net = rt.spawn(net::run(cfg, events_tx, out_rx));

    // Raw mode turns Ctrl-C into a key; a signal from outside still ends the TUI cleanly,
    // and a second one at once.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let beat = Arc::new(AtomicU64::new(0));
    watchdog(beat.clone(), stop.clone());

    let (mut terminal, guard) =
        term::enter().map_err(|e| format!("could not set up the terminal: {e}"))?;
    let mut app = App::new(theme::Theme::from_env(), user);
    let result = ui_loop(&mut terminal, &mut app, &events, &out, &stop, &beat);
    drop(guard);
    let _ = out.send(Outgoing::Quit);
    // Let the socket close politely, briefly.
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), net).await });
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

fn ui_loop(
    terminal: &mut term::Term,
    app: &mut App,
    events: &Receiver<NetEvent>,
    out: &UnboundedSender<Outgoing>,
    stop: &AtomicBool,
    beat: &AtomicU64,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("terminal: {e}");
    loop {
        beat.fetch_add(1, Ordering::Relaxed);
        if !std::io::stdin().is_terminal() {
            return Err("the terminal went away".into());
        }
        loop {
            match events.try_recv() {
                Ok(e) => app.on_net(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return Err("the connection task stopped unexpectedly".into());
                }
            }
        }
        for f in app.out.drain(..) {
            if out.send(Outgoing::Frame(f)).is_err() {
                return Err("the connection task stopped unexpectedly".into());
            }
        }
        if app.quit || stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if app.clear {
            terminal.clear().map_err(io)?;
            app.clear = false;
            app.dirty = true;
        }
        if app.dirty {
            terminal.draw(|f| view::draw(f, app)).map_err(io)?;
            app.dirty = false;
        }
        if event::poll(POLL).map_err(io)? {
            // Take everything waiting (a paste without bracketing, a burst of keys)
            // before drawing again.
            loop {
                match event::read().map_err(io)? {
                    Event::Key(k) => app.on_key(k),
                    Event::Mouse(m) => app.on_mouse(m),
                    Event::Paste(s) => app.on_paste(&s),
                    Event::Resize(..) => app.dirty = true,
                    Event::FocusGained | Event::FocusLost => {}
                }
                if app.quit || !event::poll(Duration::ZERO).map_err(io)? {
                    break;
                }
            }
        }
    }
}

/// crossterm 0.29 spins forever inside `poll`/`read` once the terminal has hung up (a
/// read of 0 bytes is retried without end), where the UI loop can no longer see a
/// signal. When the loop has stalled and the terminal is gone or a signal came, leave.
fn watchdog(beat: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    // Without the thread only a stall after a hang-up goes unhandled.
    let _ = std::thread::Builder::new()
        .name("tui-watchdog".into())
        .spawn(move || {
            let mut last = beat.load(Ordering::Relaxed);
            let mut since = Instant::now();
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let now = beat.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    since = Instant::now();
                    continue;
                }
                let gone = !std::io::stdin().is_terminal();
                if since.elapsed() >= Duration::from_secs(1)
                    && (gone || stop.load(Ordering::SeqCst))
                {
                    term::restore();
                    std::process::exit(if gone { 129 } else { 143 });
                }
            }
        });
}
