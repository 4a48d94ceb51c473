//! The browser's driver of the protocol session ([`WorkerSession`], shared
//! with the native worker), inside one dedicated Web Worker: the worker's own
//! WebSocket (binary type `arraybuffer`), the timers that tick the session
//! and pace computing, the page's commands, and the panic hook. What to send,
//! when a connection is dead and when to dial again are the session's; this
//! file only moves bytes and events between it and the browser.
//!
//! The built-in kernels compute on this thread in turns of about [`SLICE_MS`]
//! (at least one task; their tasks are small), each followed by a yield to
//! the event loop (a `MessageChannel` message, or a `setTimeout` for the idle
//! part of the CPU cap's duty cycle), so socket messages and page commands
//! are handled between tasks.
//!
//! A task of a user's kernel (a wasm job) runs on the kernel thread
//! ([`KernelThread`], a nested Web Worker started when first needed), one
//! task at a time, while this thread goes on answering the socket: a task
//! may take longer than the coordinator's idle timeout. Its module is
//! fetched and compiled here first: the turn does not take such a task until
//! it is ([`WorkerSession::next_spec`] looks without taking); it starts the
//! fetch and compile once ([`user_kernel::load`]) and computing resumes when
//! that ends. The tasks of a module that cannot be had fail with the reason,
//! as natively. When the kernel thread answers, the outcome is recorded and
//! the next task waits out the CPU cap's idle time for the whole run.
//!
//! A user's task may read the job's files and a large input. Once taken, it
//! waits (as a *preparing* task, with no compute turn meanwhile) for the
//! files it lacks, which it asks the page for (the tab's blob cache,
//! [`crate::blob_cache`], fetches and checks each once for all the tab's
//! workers, and answers with a checked `Blob`; [`JobFiles`] keeps them for
//! the job, so the next tasks wait for nothing), and for its input, which
//! this thread fetches itself with the batch's capability and checks
//! ([`crate::fetch::fetch_checked`]; not cached: each is read once, and at
//! most one is held). A file or input that cannot be had with the right
//! bytes fails the task with the reason, which names the digest, and is
//! counted in the status (`blob_failures`). The page's `holdings` command
//! says what the tab's cache holds, which the session reports to the
//! coordinator.
//!
//! A running task is stopped by terminating its kernel thread, and a fresh
//! one is started for the next task:
//!
//! | when | the task |
//! |---|---|
//! | the wall-clock backstop ([`WasmLimits::time_limit_ms`](grid_kernels::wasm::WasmLimits::time_limit_ms) of its fuel, or the page's `task_limit_ms`) | failed, as a host fault |
//! | the kernel thread crashed (a panic, an uncaught error, out of memory) | failed, as a host fault |
//! | the donor paused | handed back (`return`), after the `pause` (a preparing task too) |
//! | the donor stopped, or the connection ended | dropped: the coordinator re-issues a closed connection's tasks |
//!
//! JavaScript is single-threaded here, so all state lives in thread-locals
//! borrowed briefly by each callback. A built-in kernel runs while the state
//! is not borrowed, so that a panic inside it can still reach the state,
//! name the task to the coordinator and save what is finished.

use std::cell::{Cell, RefCell};

use grid_kernels::{ContentDigest, KernelKind, KernelSpec, TaskOutput, TaskRunner};
use grid_protocol::close::close_reason;
use grid_protocol::frame::DigestOnly;
use grid_protocol::session::{Ended, Fault, Next, Outgoing, TICK_MS, WorkerSession};
use grid_protocol::worker::TaskRef;
use grid_protocol::{CloseCode, Hello, PROTOCOL_VERSION, TaskInput, WorkerKind};
use grid_wasi::HostFault;
use js_sys::{ArrayBuffer, Function, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    BinaryType, Blob, CloseEvent, DedicatedWorkerGlobalScope, MessageChannel, MessageEvent,
    Performance, WebSocket,
};

use crate::job_files::{JobFiles, Need};
use crate::kernel_thread::{self, KernelThread, Reply};
use crate::pacing::{DutyCycle, RateMeter, SLICE_MS};
use crate::page::{Command, Event as PageEvent, Start, State, Status};
use crate::user_kernel::{self, Availability};

/// Unsent bytes on the socket above which computing waits for the network.
const MAX_BUFFERED_BYTES: u32 = 4 * 1024 * 1024;
/// The window of the task rate shown to the donor.
const RATE_WINDOW_MS: f64 = 5_000.0;
/// How long after a kernel thread failed to start users' tasks fail at once
/// with the reason, before another is tried.
const KERNEL_RETRY_MS: f64 = 60_000.0;

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
    /// Kept apart from [`APP`]: it is borrowed while a kernel runs.
    static RUNNER: RefCell<TaskRunner> = RefCell::new(TaskRunner::new());
    /// Set by the panic hook; every callback does nothing after it.
    static CRASHED: Cell<bool> = const { Cell::new(false) };
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// `performance.now()` of the current global, a window or a worker.
pub(crate) fn now() -> f64 {
    thread_local! {
        static PERFORMANCE: Performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
            .expect("a global performance object")
            .unchecked_into();
    }
    PERFORMANCE.with(Performance::now)
}

/// The session's clock: whole milliseconds of `performance.now()`.
fn now_ms() -> u64 {
    now() as u64
}

fn post(event: &PageEvent) {
    if let Err(error) = scope().post_message(&JsValue::from_str(&event.encode())) {
        web_sys::console::error_2(&"cannot post to the page:".into(), &error);
    }
}

fn with_app<R>(f: impl FnOnce(&mut App) -> R) -> Option<R> {
    if CRASHED.get() {
        return None;
    }
    APP.with(|app| app.borrow_mut().as_mut().map(f))
}

/// One open (or opening) WebSocket and the handlers attached to it.
struct Socket {
    ws: WebSocket,
    /// Whether it opened: a close before that is a failed dial.
    opened: bool,
    _handlers: [Closure<dyn FnMut(JsValue)>; 3],
}

impl Socket {
    fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }

    /// Detaches the handlers (so no event reaches a dropped closure) and
    /// closes the socket. Frames already sent go out before the close frame.
    fn close(self, reason: &str) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self
            .ws
            .close_with_code_and_reason(CloseCode::Normal.code(), &close_reason(reason.into()));
    }
}

/// Callbacks made once and kept for the worker's life.
struct Callbacks {
    compute: Function,
    reconnect: Function,
    /// Checks the running user's task against its wall-clock limit.
    backstop: Function,
    /// Posting to it runs a compute turn as soon as queued events are handled.
    channel: MessageChannel,
}

/// A user's task taken and waiting for its files or its input.
struct Preparing {
    task: TaskRef,
    /// Names it in the kernel thread's answer, and its input's fetch.
    seq: u64,
    /// Its stdin: here, or on its way (a large input).
    input: Option<Vec<u8>>,
}

/// A user's task on the kernel thread.
struct Running {
    task: TaskRef,
    /// Names it in the kernel thread's answer.
    seq: u64,
    begun: f64,
    /// When the backstop stops it (`performance.now()`).
    deadline: f64,
    timer: Option<i32>,
}

struct App {
    url: String,
    session: WorkerSession,
    /// The built-in kernel's task being computed, for the panic hook to name.
    current: Option<TaskRef>,
    /// Started when a user's task first needs it; replaced after a crash or
    /// an interrupted task.
    kernel: Option<KernelThread>,
    /// Why the last kernel thread could not start, and when.
    kernel_broken: Option<(String, f64)>,
    preparing: Option<Preparing>,
    running: Option<Running>,
    next_seq: u64,
    /// The files of the job users' tasks are on.
    files: JobFiles<Blob>,
    /// Tasks failed for a file or input that could not be had.
    blob_failures: u64,
    /// The page's wall-clock limit for users' tasks, instead of their fuel's.
    task_limit_ms: Option<f64>,
    duty: DutyCycle,
    /// No compute turn starts before this (`performance.now()`): the CPU
    /// cap's idle time after the last turn or user's task.
    rest_until: f64,
    rate: RateMeter,
    /// Milliseconds spent in kernels, over all connections.
    compute_ms: f64,
    socket: Option<Socket>,
    /// Bumped per socket, so events of an old socket are recognised.
    generation: u64,
    reconnect_timer: Option<i32>,
    /// The browser cannot make a WebSocket for the URL at all; not retried.
    unusable_url: Option<String>,
    compute_scheduled: bool,
    /// The next task's module is being fetched and compiled, or the kernel
    /// thread is starting: no compute turn until it is done.
    waiting: bool,
    callbacks: Callbacks,
    last_status: Option<Status>,
}

/// Starts listening for the page's commands and says ready.
pub fn run() {
    std::panic::set_hook(Box::new(on_panic));
    let on_command = Closure::<dyn FnMut(MessageEvent)>::new(|event: MessageEvent| {
        let data = event.data();
        let Some(text) = data.as_string() else {
            match decode_blob_answer(&data) {
                Ok((blob, answer)) => {
                    with_app(|app| app.on_blob(blob, answer));
                    report();
                }
                Err(error) => web_sys::console::error_1(&error.into()),
            }
            return;
        };
        match Command::decode(&text) {
            Ok(command) => handle_command(command),
            Err(error) => web_sys::console::error_1(&error.into()),
        }
    });
    scope().set_onmessage(Some(on_command.as_ref().unchecked_ref()));
    on_command.forget();
    post(&PageEvent::Ready {});
}

/// The page's answer to [`PageEvent::FetchBlob`], the one message that is
/// not JSON: `{type: "blob", blob: "sha256:...", data: Blob}` or `{type:
/// "blob", blob, error: "..."}`.
fn decode_blob_answer(message: &JsValue) -> Result<(ContentDigest, Result<Blob, String>), String> {
    let field = |name: &str| Reflect::get(message, &name.into()).unwrap_or(JsValue::UNDEFINED);
    if field("type").as_string().as_deref() != Some("blob") {
        return Err(format!(
            "the page sent a message that is neither a command nor a blob: {}",
            user_kernel::describe(message)
        ));
    }
    let blob = field("blob")
        .as_string()
        .and_then(|d| d.parse().ok())
        .ok_or("the page sent a blob without its digest")?;
    let answer = match field("data").dyn_into::<Blob>() {
        Ok(data) => Ok(data),
        Err(_) => Err(field("error")
            .as_string()
            .unwrap_or_else(|| "the page sent neither the blob nor an error".into())),
    };
    Ok((blob, answer))
}

fn handle_command(command: Command) {
    match command {
        Command::Start(options) => start(options),
        Command::Holdings { blobs } => {
            with_app(|app| {
                app.session.set_holdings(blobs);
                app.pump();
            });
        }
        Command::Pause {} => {
            with_app(|app| {
                // The task goes back unfinished, after the pause, and is
                // not counted against it.
                let abandoned = app.interrupt(None);
                app.session.pause();
                if let Some(task) = abandoned {
                    app.session.return_task(&task);
                }
                app.pump();
            });
        }
        Command::Resume {} => {
            with_app(|app| {
                app.session.resume();
                app.pump();
                app.schedule_compute(0.0);
            });
        }
        Command::Cap { percent } => {
            with_app(|app| app.duty = DutyCycle::new(percent));
        }
        Command::Stop {} => {
            with_app(|app| {
                app.session.stop();
                app.interrupt(None);
                app.pump();
                if let Some(timer) = app.reconnect_timer.take() {
                    scope().clear_timeout_with_handle(timer);
                }
                if let Some(socket) = app.socket.take() {
                    socket.close("the donor left");
                }
                app.session.on_closed(Ended::Stopped, now_ms(), 0.0);
            });
            report();
            post(&PageEvent::Stopped {});
            return;
        }
    }
    report();
}

fn start(options: Start) {
    let Start {
        url,
        session,
        name,
        cap,
        paused,
        task_limit_ms,
        holds,
        for_users,
    } = options;
    if APP.with(|app| app.borrow().is_some()) {
        web_sys::console::warn_1(&"start: this worker is already started".into());
        return;
    }
    let compute = Closure::<dyn FnMut()>::new(compute_turn);
    let reconnect = Closure::<dyn FnMut()>::new(|| {
        with_app(|app| {
            app.reconnect_timer = None;
            app.connect();
        });
        report();
    });
    let tick = Closure::<dyn FnMut()>::new(tick);
    let backstop = Closure::<dyn FnMut()>::new(|| {
        with_app(App::on_backstop);
        report();
    });
    let channel = MessageChannel::new().expect("MessageChannel");
    channel
        .port1()
        .set_onmessage(Some(compute.as_ref().unchecked_ref()));
    let callbacks = Callbacks {
        compute: compute.as_ref().unchecked_ref::<Function>().clone(),
        reconnect: reconnect.as_ref().unchecked_ref::<Function>().clone(),
        backstop: backstop.as_ref().unchecked_ref::<Function>().clone(),
        channel,
    };
    if let Err(error) = scope().set_interval_with_callback_and_timeout_and_arguments_0(
        tick.as_ref().unchecked_ref(),
        TICK_MS as i32,
    ) {
        web_sys::console::error_2(&"cannot start the tick timer:".into(), &error);
    }
    // These live as long as the Web Worker.
    compute.forget();
    reconnect.forget();
    tick.forget();
    backstop.forget();

    let mut session = WorkerSession::new(Hello {
        holds: Vec::new(),
        for_users,
        protocol: PROTOCOL_VERSION,
        kind: WorkerKind::Browser,
        threads: 1,
        name: name.filter(|n| !n.trim().is_empty()),
        session: Some(session),
        // Users' kernels run on the browser's own WebAssembly engine.
        kernels: user_kernel::supported().then(|| KernelKind::ALL.to_vec()),
    });
    session.set_holdings(holds);
    if paused {
        session.pause();
    }
    let app = App {
        url,
        session,
        current: None,
        kernel: None,
        kernel_broken: None,
        preparing: None,
        running: None,
        next_seq: 0,
        files: JobFiles::new(),
        blob_failures: 0,
        task_limit_ms: task_limit_ms.map(|ms| ms as f64),
        duty: DutyCycle::new(cap),
        rest_until: 0.0,
        rate: RateMeter::new(RATE_WINDOW_MS),
        compute_ms: 0.0,
        socket: None,
        generation: 0,
        reconnect_timer: None,
        unusable_url: None,
        compute_scheduled: false,
        waiting: false,
        callbacks,
        last_status: None,
    };
    APP.with(|cell| *cell.borrow_mut() = Some(app));
    with_app(App::connect);
}

impl App {
    fn connect(&mut self) {
        if self.session.is_stopping()
            || self.session.refused().is_some()
            || self.unusable_url.is_some()
        {
            return;
        }
        let ws = match WebSocket::new(&self.url) {
            Ok(ws) => ws,
            Err(error) => {
                let reason = format!(
                    "cannot open a WebSocket to {}: {}",
                    self.url,
                    error.as_string().unwrap_or_else(|| format!("{error:?}"))
                );
                web_sys::console::error_1(&format!("{reason}; not reconnecting").into());
                self.unusable_url = Some(reason);
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        self.generation += 1;
        let generation = self.generation;
        let handler = |f: fn(&mut App, JsValue)| {
            Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
                with_app(|app| {
                    if app.generation == generation {
                        f(app, event);
                    }
                });
                report();
            })
        };
        // No error handler: a close event follows every error, with the code.
        let handlers = [
            handler(App::on_open),
            handler(App::on_message),
            handler(App::on_close),
        ];
        ws.set_onopen(Some(handlers[0].as_ref().unchecked_ref()));
        ws.set_onmessage(Some(handlers[1].as_ref().unchecked_ref()));
        ws.set_onclose(Some(handlers[2].as_ref().unchecked_ref()));
        self.socket = Some(Socket {
            ws,
            opened: false,
            _handlers: handlers,
        });
    }

    fn on_open(&mut self, _event: JsValue) {
        if let Some(socket) = &mut self.socket {
            socket.opened = true;
        }
        self.session.on_open(now_ms());
        self.pump();
    }

    fn on_message(&mut self, event: JsValue) {
        let data = event.unchecked_into::<MessageEvent>().data();
        let result = if let Some(text) = data.as_string() {
            self.session.on_text(&text, now_ms())
        } else {
            let len = data
                .dyn_ref::<ArrayBuffer>()
                .map_or(0, |b| b.byte_length() as usize);
            Err(self.session.on_binary(len))
        };
        match result {
            Ok(()) => {
                self.pump();
                if self.session.has_work() {
                    self.schedule_compute(0.0);
                }
            }
            Err(fault) => self.drop_connection(fault),
        }
    }

    fn on_close(&mut self, event: JsValue) {
        self.interrupt(None);
        let event = event.unchecked_into::<CloseEvent>();
        let opened = self.socket.take().is_some_and(|s| s.opened);
        let next = if opened {
            let ended = match event.code() {
                // No status code in the close frame.
                1005 => Ended::Closed {
                    code: None,
                    reason: event.reason(),
                },
                // No close frame at all.
                1006 => Ended::Dropped(String::new()),
                code => Ended::Closed {
                    code: Some(code),
                    reason: event.reason(),
                },
            };
            self.session
                .on_closed(ended, now_ms(), js_sys::Math::random())
        } else {
            let error = format!("cannot reach the coordinator at {}", self.url);
            self.session.on_dial_failed(error, js_sys::Math::random())
        };
        self.follow(next);
    }

    /// Closes a connection the coordinator misused or left silent.
    fn drop_connection(&mut self, fault: Fault) {
        web_sys::console::warn_1(&format!("dropping the connection: {fault}").into());
        if let Some(socket) = self.socket.take() {
            socket.close(&fault.to_string());
        }
        self.interrupt(None);
        let next = self
            .session
            .on_closed(Ended::Fault(fault), now_ms(), js_sys::Math::random());
        self.follow(next);
    }

    /// Does what the session decided after a connection ended.
    fn follow(&mut self, next: Next) {
        let error = self.session.last_error().unwrap_or("the connection ended");
        match next {
            Next::Reconnect { after_ms } => {
                web_sys::console::warn_1(&format!("{error}; reconnecting in {after_ms} ms").into());
                self.schedule_reconnect(after_ms);
            }
            Next::Refused(reason) => {
                web_sys::console::error_1(&format!("{reason}; not reconnecting").into());
            }
            Next::Stop => {}
        }
    }

    fn schedule_reconnect(&mut self, after_ms: u64) {
        if self.reconnect_timer.is_some() {
            return;
        }
        match scope().set_timeout_with_callback_and_timeout_and_arguments_0(
            &self.callbacks.reconnect,
            i32::try_from(after_ms).unwrap_or(i32::MAX),
        ) {
            Ok(timer) => self.reconnect_timer = Some(timer),
            Err(error) => web_sys::console::error_2(&"cannot schedule a reconnect:".into(), &error),
        }
    }

    /// Sends what the session queued, if the socket is open.
    fn pump(&mut self) {
        let Some(socket) = self.socket.as_ref().filter(|s| s.is_open()) else {
            return;
        };
        let ws = socket.ws.clone();
        let mut failed = None;
        for outgoing in self.session.take_outgoing(now_ms()) {
            let sent = match &outgoing {
                Outgoing::Text(text) => ws.send_with_str(text),
                Outgoing::Binary(bytes) => ws.send_with_u8_array(bytes),
            };
            if let Err(error) = sent {
                failed = Some(format!("cannot send: {error:?}"));
                break;
            }
        }
        if let Some(reason) = failed {
            self.drop_connection(Fault::Protocol(reason));
        }
    }

    /// The CPU cap's idle time after `busy_ms` of computing.
    fn rest_after(&mut self, busy_ms: f64) {
        self.rest_until = now() + self.duty.idle_after(busy_ms);
    }

    fn schedule_compute(&mut self, delay_ms: f64) {
        if self.compute_scheduled
            || self.waiting
            || self.preparing.is_some()
            || self.running.is_some()
            || !self.session.has_work()
        {
            return;
        }
        self.compute_scheduled = true;
        let delay_ms = delay_ms.max(self.rest_until - now());
        // Let the network catch up before making more results.
        let backlog = self.socket.as_ref().map_or(0, |s| s.ws.buffered_amount());
        let delay_ms = if backlog > MAX_BUFFERED_BYTES {
            delay_ms.max(50.0)
        } else {
            delay_ms
        };
        let scheduled = if delay_ms < 1.0 {
            self.callbacks
                .channel
                .port2()
                .post_message(&JsValue::UNDEFINED)
        } else {
            scope()
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    &self.callbacks.compute,
                    delay_ms.round() as i32,
                )
                .map(drop)
        };
        if let Err(error) = scheduled {
            self.compute_scheduled = false;
            web_sys::console::error_2(&"cannot schedule computing:".into(), &error);
        }
    }
}

/// What a compute turn does next.
enum Step {
    /// A built-in kernel's task, here.
    Run(TaskRef),
    /// A user's task, on the kernel thread: the turn ends.
    Dispatch(TaskRef),
    /// The task's module cannot be had: fail it with the reason.
    Fail(TaskRef, String),
    /// The next task's module or the kernel thread is on its way: end the
    /// turn.
    Wait,
}

impl App {
    /// The next step of a compute turn: the next task, unless its module
    /// must be fetched and compiled first.
    fn next_step(&mut self) -> Option<Step> {
        if let Some(KernelSpec::Wasm(params)) = self.session.next_spec() {
            let module = params.module;
            match user_kernel::availability(&module, now()) {
                Availability::Ready => {}
                Availability::Loading => return Some(Step::Wait),
                Availability::Missing => {
                    user_kernel::load(&grid_protocol::http_base(&self.url), module, || {
                        with_app(|app| {
                            app.waiting = false;
                            app.schedule_compute(0.0);
                        });
                    });
                    return Some(Step::Wait);
                }
                Availability::Failed(reason) => {
                    let task = self.session.start_task()?;
                    return Some(Step::Fail(task, reason));
                }
            }
            if self
                .kernel_broken
                .as_ref()
                .is_some_and(|(_, at)| now() - at >= KERNEL_RETRY_MS)
            {
                self.kernel_broken = None;
            }
            if self.kernel.is_none() && self.kernel_broken.is_none() {
                self.start_kernel();
            }
            if let Some((reason, _)) = &self.kernel_broken {
                let reason = reason.clone();
                let task = self.session.start_task()?;
                return Some(Step::Fail(task, reason));
            }
            if !self.kernel.as_ref().is_some_and(KernelThread::is_ready) {
                return Some(Step::Wait);
            }
            return self.session.start_task().map(Step::Dispatch);
        }
        self.current = self.session.start_task();
        self.current.clone().map(Step::Run)
    }

    fn start_kernel(&mut self) {
        let on_reply = |reply: Reply| {
            with_app(|app| app.on_kernel_reply(reply));
            report();
        };
        // A fresh thread holds no files.
        self.files.kernel_replaced();
        match KernelThread::start(on_reply) {
            Ok(kernel) => self.kernel = Some(kernel),
            Err(error) => {
                web_sys::console::error_1(&error.clone().into());
                self.kernel_broken = Some((error, now()));
            }
        }
    }

    /// Takes a user's task towards the (ready) kernel thread: it goes at
    /// once if its files and input are here, else it waits for them.
    fn dispatch(&mut self, task: TaskRef) {
        self.next_seq += 1;
        let seq = self.next_seq;
        let input = match &task.input {
            TaskInput::Inline(bytes) => Some(bytes.to_vec()),
            TaskInput::Blob { blob, .. } => {
                self.fetch_input(seq, *blob, task.capability.clone());
                None
            }
        };
        self.preparing = Some(Preparing { task, seq, input });
        self.advance();
    }

    /// Fetches and checks a large input, for the preparing task `seq`.
    fn fetch_input(&self, seq: u64, blob: ContentDigest, capability: Option<std::sync::Arc<str>>) {
        let base = grid_protocol::http_base(&self.url);
        wasm_bindgen_futures::spawn_local(async move {
            let (fetched, _) =
                crate::fetch::fetch_checked(&base, &blob, capability.as_deref()).await;
            let input = fetched.map(|buffer| Uint8Array::new(&buffer).to_vec());
            with_app(|app| app.on_input(seq, input));
            report();
        });
    }

    fn on_input(&mut self, seq: u64, input: Result<Vec<u8>, String>) {
        let Some(preparing) = self.preparing.as_mut().filter(|p| p.seq == seq) else {
            return;
        };
        match input {
            Ok(input) => {
                preparing.input = Some(input);
                self.advance();
            }
            Err(reason) => self.fail_preparing(&format!("the task's input: {reason}")),
        }
    }

    /// The page answered for one of the job's files.
    fn on_blob(&mut self, blob: ContentDigest, answer: Result<Blob, String>) {
        self.files.answer(blob, answer);
        self.advance();
    }

    /// Sends the preparing task to the kernel thread if its files and input
    /// are here; else asks the page for the files it lacks.
    fn advance(&mut self) {
        let Some(preparing) = &self.preparing else {
            return;
        };
        let spec = preparing.task.spec.clone();
        let KernelSpec::Wasm(params) = spec.as_ref() else {
            unreachable!("only users' tasks go to the kernel thread")
        };
        let files = match self.files.need(&params.files) {
            Need::Ready(files) => files,
            Need::Fetch(missing) => {
                let capability = preparing.task.capability.as_deref().map(String::from);
                for (blob, size) in missing {
                    post(&PageEvent::FetchBlob {
                        blob,
                        size,
                        capability: capability.clone(),
                    });
                }
                return;
            }
            Need::Failed(reason) => {
                self.fail_preparing(&reason);
                return;
            }
        };
        if preparing.input.is_none() {
            return;
        }
        let preparing = self.preparing.take().expect("looked at above");
        self.send_to_kernel(preparing, files);
    }

    /// The preparing task cannot have a file or its input.
    fn fail_preparing(&mut self, reason: &str) {
        if let Some(preparing) = self.preparing.take() {
            web_sys::console::warn_1(&reason.into());
            self.blob_failures += 1;
            self.session.fail_task(&preparing.task, reason);
            self.end_kernel_task();
        }
    }

    /// Hands a prepared task to the (ready) kernel thread, with the files
    /// it does not hold yet, and arms the backstop.
    fn send_to_kernel(&mut self, preparing: Preparing, files: Vec<(ContentDigest, Blob)>) {
        let Preparing { task, seq, input } = preparing;
        let KernelSpec::Wasm(params) = task.spec.as_ref() else {
            unreachable!("only users' tasks go to the kernel thread")
        };
        let (Some(kernel), Some(module)) = (&self.kernel, user_kernel::compiled(&params.module))
        else {
            let error = format!("the module {} is not compiled here", params.module);
            self.session.fail_task(&task, &error);
            self.end_kernel_task();
            return;
        };
        let message = kernel_thread::Task {
            seq,
            module,
            params: params.clone(),
            index: task.index,
            input: input.unwrap_or_default(),
            files,
        };
        if let Err(error) = kernel.send(&message) {
            if let Some(kernel) = self.kernel.take() {
                kernel.stop();
            }
            self.session.fail_task(&task, &error);
            self.end_kernel_task();
            return;
        }
        self.files.sent(&params.files);
        let begun = now();
        let limit = self
            .task_limit_ms
            .unwrap_or_else(|| params.limits().time_limit_ms() as f64);
        self.running = Some(Running {
            task,
            seq,
            begun,
            deadline: begun + limit,
            timer: None,
        });
        self.arm_backstop();
    }

    /// A timer for the running task's deadline (in steps, if it is beyond
    /// the longest delay a timer takes).
    fn arm_backstop(&mut self) {
        let Some(running) = &mut self.running else {
            return;
        };
        let delay = (running.deadline - now()).clamp(0.0, f64::from(i32::MAX));
        match scope().set_timeout_with_callback_and_timeout_and_arguments_0(
            &self.callbacks.backstop,
            delay.ceil() as i32,
        ) {
            Ok(timer) => running.timer = Some(timer),
            Err(error) => web_sys::console::error_2(&"cannot arm the backstop:".into(), &error),
        }
    }

    /// The running task's timer fired: past its deadline, it is stopped and
    /// failed as a host fault, and goes to another worker.
    fn on_backstop(&mut self) {
        let Some(running) = &mut self.running else {
            return;
        };
        running.timer = None;
        if now() < running.deadline {
            self.arm_backstop();
            return;
        }
        let fault = HostFault::Engine(format!(
            "the task ran past this worker's wall-clock limit of {:.1} s; its kernel thread was stopped",
            (running.deadline - running.begun) / 1000.0
        ))
        .to_string();
        web_sys::console::warn_1(&fault.clone().into());
        self.interrupt(Some(&fault));
        self.end_kernel_task();
    }

    fn on_kernel_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Ready => {
                if let Some(kernel) = &mut self.kernel {
                    kernel.set_ready();
                }
                self.waiting = false;
                self.schedule_compute(0.0);
            }
            Reply::Done { seq, result } => {
                let Some(running) = self.running.take_if(|r| r.seq == seq) else {
                    return;
                };
                if let Some(timer) = running.timer {
                    scope().clear_timeout_with_handle(timer);
                }
                let busy = now() - running.begun;
                self.compute_ms += busy;
                self.rest_after(busy);
                match result {
                    Ok(outcome) => {
                        let output = TaskOutput::Wasm(outcome);
                        if running.task.uploads(output.encoded_len()) {
                            self.upload_output(running.task, &output);
                        } else {
                            self.session.finish_task(&running.task, &output);
                        }
                    }
                    // The module could not run here (a host fault): the task
                    // goes elsewhere. The kernel thread dropped its files,
                    // and their handles may be stale: ask the page again.
                    Err(fault) => {
                        self.files.forget();
                        self.session.fail_task(&running.task, &fault);
                    }
                }
                self.end_kernel_task();
            }
            Reply::Crashed(error) => {
                let error = format!("the kernel thread crashed: {error}");
                web_sys::console::warn_1(&error.clone().into());
                if let Some(kernel) = self.kernel.take() {
                    if !kernel.is_ready() {
                        self.kernel_broken = Some((error.clone(), now()));
                    }
                    kernel.stop();
                }
                // The turn may have waited for it to start: look afresh.
                self.waiting = false;
                self.interrupt(Some(&HostFault::Engine(error).to_string()));
                self.end_kernel_task();
            }
        }
    }

    /// Stores an output too large for a results frame as a blob, then
    /// finishes its task naming it (or fails the task if the coordinator
    /// would not store it). The next task need not wait for it.
    fn upload_output(&self, task: TaskRef, output: &TaskOutput) {
        let base = grid_protocol::http_base(&self.url);
        let bytes = output.to_bytes();
        let sent = DigestOnly::of(output, &bytes);
        wasm_bindgen_futures::spawn_local(async move {
            let capability = task.capability.clone().unwrap_or_default();
            let stored =
                crate::fetch::put_blob(&base, &ContentDigest(sent.digest), &bytes, &capability)
                    .await;
            drop(bytes);
            with_app(|app| {
                match stored {
                    Ok(()) => {
                        app.session.finish_uploaded(&task, sent);
                    }
                    Err(error) => {
                        web_sys::console::warn_1(&error.clone().into());
                        app.session.fail_task(&task, &error);
                    }
                }
                app.pump();
            });
            report();
        });
    }

    /// Stops the running (or preparing) user's task, if there is one, by terminating its
    /// kernel thread (a fresh one starts for the next task). The task is
    /// failed with `fault` (it goes to another worker); without one it is
    /// returned to the caller, who hands it back (a pause) or drops it (its
    /// connection is gone or going, and the coordinator re-issues it).
    fn interrupt(&mut self, fault: Option<&str>) -> Option<TaskRef> {
        if let Some(preparing) = self.preparing.take() {
            // Its kernel thread is idle: nothing to stop.
            if let Some(fault) = fault {
                self.session.fail_task(&preparing.task, fault);
            }
            return Some(preparing.task);
        }
        let running = self.running.take()?;
        if let Some(kernel) = self.kernel.take() {
            kernel.stop();
        }
        if let Some(timer) = running.timer {
            scope().clear_timeout_with_handle(timer);
        }
        let busy = now() - running.begun;
        self.compute_ms += busy;
        self.rest_after(busy);
        if let Some(fault) = fault {
            self.session.fail_task(&running.task, fault);
        }
        Some(running.task)
    }

    /// After a user's task: what is ready goes out, and the next turn comes
    /// after the cap's idle time.
    fn end_kernel_task(&mut self) {
        self.session.end_turn();
        self.pump();
        self.schedule_compute(0.0);
    }
}

/// One compute turn: tasks until the slice is used up, then results out and
/// the next turn scheduled after the idle time the CPU cap asks for.
fn compute_turn() {
    let started = now();
    if with_app(|app| app.compute_scheduled = false).is_none() {
        return;
    }
    while let Some(step) = with_app(App::next_step).flatten() {
        let task = match step {
            Step::Run(task) => task,
            Step::Dispatch(task) => {
                with_app(|app| app.dispatch(task));
                break;
            }
            Step::Fail(task, reason) => {
                with_app(|app| app.session.fail_task(&task, &reason));
                continue;
            }
            Step::Wait => {
                with_app(|app| app.waiting = true);
                break;
            }
        };
        let begun = now();
        let output = RUNNER.with(|runner| {
            runner
                .borrow_mut()
                .run(&task.spec, task.job_tasks, task.index)
                .map_err(|e| e.to_string())
        });
        let finished = now();
        with_app(|app| {
            app.current = None;
            app.compute_ms += finished - begun;
            match &output {
                Ok(output) => {
                    app.session.finish_task(&task, output);
                }
                Err(error) => app.session.fail_task(&task, error),
            }
        });
        if finished - started >= SLICE_MS {
            break;
        }
    }
    with_app(|app| {
        app.session.end_turn();
        app.pump();
        app.rest_after(now() - started);
        app.schedule_compute(0.0);
    });
}

fn tick() {
    with_app(|app| {
        // Keeps the rate meter moving while offline too.
        app.rate.record(now(), app.session.tasks_done());
        if app.socket.as_ref().is_some_and(Socket::is_open) {
            match app.session.tick(now_ms()) {
                Ok(()) => {
                    app.pump();
                    app.schedule_compute(0.0);
                }
                Err(fault) => app.drop_connection(fault),
            }
        }
    });
    report();
}

/// Posts the worker's figures to the page when they changed.
fn report() {
    let status = with_app(|app| {
        let retrying = app.reconnect_timer.is_some();
        // A user's task counts while it runs, not only once it is done.
        let running_ms = app.running.as_ref().map_or(0.0, |r| now() - r.begun);
        let mut status = Status::of(
            &app.session,
            retrying,
            app.compute_ms + running_ms,
            app.rate.per_second(),
        );
        status.blob_failures = app.blob_failures;
        if let Some(reason) = &app.unusable_url {
            status.state = State::Refused;
            status.error = Some(reason.clone());
        }
        if app.last_status.as_ref() == Some(&status) {
            return None;
        }
        app.last_status = Some(status.clone());
        Some(status)
    });
    if let Some(Some(status)) = status {
        post(&PageEvent::Status(status));
    }
}

/// The panic hook: the console gets the panic with its stack; the coordinator
/// gets a `failed` message naming the panic for the task that caused it, the
/// finished results and the unstarted tasks; the page is told to replace this
/// Web Worker (a WebAssembly instance is not usable after a panic).
fn on_panic(info: &std::panic::PanicHookInfo<'_>) {
    console_error_panic_hook::hook(info);
    if CRASHED.replace(true) {
        return;
    }
    let message = crate::panic_message(info);
    APP.with(|cell| {
        // Borrowed only if the panic came from the driver itself, not a kernel.
        if let Ok(mut app) = cell.try_borrow_mut()
            && let Some(app) = app.as_mut()
        {
            if let Some(task) = app.current.take() {
                app.session.fail_task(&task, &format!("panic: {message}"));
            }
            app.session.stop();
            app.pump();
            if let Some(timer) = app.reconnect_timer.take() {
                scope().clear_timeout_with_handle(timer);
            }
            if let Some(socket) = app.socket.take() {
                socket.close("the worker crashed");
            }
        }
    });
    post(&PageEvent::Crashed { error: message });
}
