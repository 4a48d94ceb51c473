//! The JSON control messages. Each is one WebSocket text frame holding one
//! object whose `type` field names the message. Internally tagged objects are
//! what a worker author in any language expects to read and write; task
//! outputs, the only bulky data, travel in the binary [`crate::frame`] instead.
//!
//! Decoding is strict: unknown message types and unknown or missing fields
//! are errors, so a confused peer is told at once rather than half-understood.

use bytes::Bytes;
use grid_kernels::{ContentDigest, KernelKind, KernelSpec};
use serde::{Deserialize, Serialize};

use crate::tasks::TaskRanges;
use crate::{CloseCode, MAX_TEXT_FRAME_BYTES, PROTOCOL_VERSION};

/// The longest donor name and donor session id a hello may carry.
pub const MAX_NAME_CHARS: usize = 64;
/// The most threads one worker connection may claim.
pub const MAX_THREADS: u32 = 1024;
/// The most blobs a `hello` or a `holding` message may list (each list):
/// 512 digests take 37 KiB, inside [`MAX_TEXT_FRAME_BYTES`]. A worker
/// holding more reports the ones it used last.
pub const MAX_HOLDINGS: usize = 512;

/// The most users a `hello` may limit its worker to (`for`).
pub const MAX_FOR_USERS: usize = 16;

/// What kind of program a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerKind {
    Native,
    Browser,
}

impl WorkerKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkerKind::Native => "native",
            WorkerKind::Browser => "browser",
        }
    }
}

/// The first message on every worker connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub protocol: u32,
    pub kind: WorkerKind,
    /// How many tasks this connection computes at once; batches are sized by it.
    pub threads: u32,
    /// A donor-chosen name shown on the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups connections that are one donor, such as the Web Workers of one
    /// browser tab. Replicas of a task never go to two connections of one
    /// session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The kernels this worker runs. Absent: the four built-in ones (a
    /// worker that does not name `wasm` is never sent a wasm job's tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<Vec<KernelKind>>,
    /// The blobs this worker's cache holds (files of wasm jobs), so the
    /// coordinator can send it tasks whose files it already has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<ContentDigest>,
    /// Work only for these users (by name): a donor page opened with
    /// `?for=NAME` computes nothing else. Empty: anyone's jobs. At most
    /// [`MAX_FOR_USERS`]; a name no user has closes the connection
    /// ([`CloseCode::BadHello`]).
    #[serde(rename = "for", default, skip_serializing_if = "Vec::is_empty")]
    pub for_users: Vec<String>,
}

impl Hello {
    /// Whether this worker runs `kind` tasks.
    pub fn runs(&self, kind: KernelKind) -> bool {
        match &self.kernels {
            Some(kernels) => kernels.contains(&kind),
            None => KernelKind::BUILT_IN.contains(&kind),
        }
    }

    /// Checks the values of a decoded hello, naming the close code to use.
    pub fn validate(&self) -> Result<(), (CloseCode, String)> {
        if self.protocol != PROTOCOL_VERSION {
            return Err((
                CloseCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this coordinator speaks {PROTOCOL_VERSION}",
                    self.protocol
                ),
            ));
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return Err((
                CloseCode::BadHello,
                format!(
                    "threads must be between 1 and {MAX_THREADS}, got {}",
                    self.threads
                ),
            ));
        }
        for (field, value) in [("name", &self.name), ("session", &self.session)] {
            if let Some(value) = value
                && (value.chars().count() > MAX_NAME_CHARS || value.chars().any(char::is_control))
            {
                return Err((
                    CloseCode::BadHello,
                    format!("{field} must be at most {MAX_NAME_CHARS} printable characters"),
                ));
            }
        }
        if self.for_users.len() > MAX_FOR_USERS {
            return Err((
                CloseCode::BadHello,
                format!(
                    "for names {} users, more than the {MAX_FOR_USERS} allowed",
                    self.for_users.len()
                ),
            ));
        }
        if let Some(name) = self.for_users.iter().find(|name| {
            name.is_empty()
                || name.chars().count() > MAX_NAME_CHARS
                || name.chars().any(char::is_control)
        }) {
            return Err((
                CloseCode::BadHello,
                format!(
                    "for: {name:?} is not a user name (1 to {MAX_NAME_CHARS} printable characters)"
                ),
            ));
        }
        if self.holds.len() > MAX_HOLDINGS {
            return Err((
                CloseCode::BadHello,
                format!(
                    "holds lists {} blobs, more than the {MAX_HOLDINGS} allowed",
                    self.holds.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Messages a worker sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkerMessage {
    /// The first message, exactly once.
    Hello(Hello),
    /// Sent every `heartbeat_ms` (from the welcome) when nothing else is.
    Heartbeat {},
    /// Hands back tasks of a batch the worker will not compute (the tab is
    /// closing, the donor paused). They are re-issued at once.
    Return { batch: u64, tasks: TaskRanges },
    /// The worker could not compute a task (a panic, out of memory). The task
    /// goes to another worker; a task that fails everywhere fails its job.
    Failed {
        batch: u64,
        task: u32,
        error: String,
    },
    /// Stop sending batches until `resume`. Batches already sent stay leased.
    Pause {},
    /// Send batches again.
    Resume {},
    /// The worker's cache gained or lost these blobs since its hello or its
    /// last `holding`. At most [`MAX_HOLDINGS`] in each list.
    Holding {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added: Vec<ContentDigest>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removed: Vec<ContentDigest>,
    },
}

/// A lease on some tasks of one job, with everything needed to compute them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Unique per coordinator; results name it.
    pub batch: u64,
    pub job: u64,
    /// The kernel and its parameters, as in the HTTP API.
    pub spec: KernelSpec,
    /// How many tasks the whole job has; task `i` of `job_tasks` covers the
    /// part of the domain the kernel's split rule gives it.
    pub job_tasks: u32,
    /// The tasks leased in this batch.
    pub tasks: TaskRanges,
    /// How long the lease lasts without progress. Results extend it.
    pub lease_ms: u64,
    /// For a wasm job: each task's input (its stdin), in the order of
    /// `tasks`. Empty for the built-in kernels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<TaskInput>,
    /// For a wasm job with files or blob inputs: the capability that lets
    /// this worker read them (`GET /api/blobs/...` with the header
    /// `Grid-Capability`) while it holds this batch's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// Tasks of this batch whose output the worker sends as a digest-only
    /// entry (`frame`) when it is longer than
    /// [`crate::frame::DIGEST_ONLY_MIN_BYTES`]: another replica sends it
    /// in full. Absent: every output in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_only: Option<TaskRanges>,
    /// The name of the user whose job this is, for the donor to see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One task's input: its bytes inline (base64, standard alphabet, padded,
/// as a JSON string), or, past [`INLINE_INPUT_BYTES`], a blob the worker
/// fetches (`{"blob": "sha256:...", "size": n}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskInput {
    Inline(Bytes),
    Blob { blob: ContentDigest, size: u64 },
}

/// The largest input sent inside a batch; larger ones are blob references.
pub const INLINE_INPUT_BYTES: u64 = 64 * 1024;

impl Default for TaskInput {
    fn default() -> TaskInput {
        TaskInput::Inline(Bytes::new())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlobInput {
    blob: ContentDigest,
    size: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireInput<'a> {
    #[serde(borrow)]
    Inline(std::borrow::Cow<'a, str>),
    Blob(BlobInput),
}

impl Serialize for TaskInput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        match self {
            TaskInput::Inline(bytes) => {
                serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            TaskInput::Blob { blob, size } => BlobInput {
                blob: *blob,
                size: *size,
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for TaskInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TaskInput, D::Error> {
        use base64::Engine as _;
        match WireInput::deserialize(deserializer)? {
            WireInput::Inline(text) => base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map(|bytes| TaskInput::Inline(Bytes::from(bytes)))
                .map_err(|e| serde::de::Error::custom(format!("an input is not base64: {e}"))),
            WireInput::Blob(BlobInput { blob, size }) => Ok(TaskInput::Blob { blob, size }),
        }
    }
}

/// Messages the coordinator sends.
// A batch is most of what is sent and each message is built, encoded and
// dropped (or decoded and consumed) at once: boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CoordinatorMessage {
    /// The answer to a good hello.
    Welcome {
        /// This connection's worker id.
        worker: u64,
        /// How often to send a heartbeat when idle.
        heartbeat_ms: u64,
        /// The connection is closed if nothing arrives for this long.
        idle_timeout_ms: u64,
        /// The largest results frame the coordinator accepts.
        max_frame_bytes: u64,
    },
    Batch(Batch),
    /// One per results frame, in the order the frames arrived, sent once the
    /// accepted results are durable. `accepted + duplicate + rejected` is the
    /// number of results in the frame.
    Ack {
        batch: u64,
        accepted: u32,
        duplicate: u32,
        rejected: u32,
    },
    /// Stop working on a batch and send nothing more for it (its job was
    /// cancelled, or every task in it was finished by other workers).
    Revoke {
        batch: u64,
    },
    Heartbeat {},
}

/// Why a text frame is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes exceeds the {MAX_TEXT_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("invalid task ranges in batch {0}")]
    BadRanges(u64),
    #[error("batch {0} does not carry one input per task")]
    Inputs(u64),
}

impl DecodeError {
    pub fn close_code(&self) -> CloseCode {
        match self {
            DecodeError::TooLarge(_) => CloseCode::FrameTooLarge,
            DecodeError::Invalid(_) | DecodeError::BadRanges(_) | DecodeError::Inputs(_) => {
                CloseCode::MalformedFrame
            }
        }
    }
}

impl WorkerMessage {
    pub fn decode(text: &str) -> Result<WorkerMessage, DecodeError> {
        if text.len() > MAX_TEXT_FRAME_BYTES {
            return Err(DecodeError::TooLarge(text.len()));
        }
        let message: WorkerMessage =
            serde_json::from_str(text).map_err(|e| DecodeError::Invalid(e.to_string()))?;
        match &message {
            WorkerMessage::Return { batch, tasks } => tasks
                .validate()
                .map_err(|_| DecodeError::BadRanges(*batch))?,
            WorkerMessage::Holding { added, removed }
                if added.len() > MAX_HOLDINGS || removed.len() > MAX_HOLDINGS =>
            {
                return Err(DecodeError::Invalid(format!(
                    "a holding message lists at most {MAX_HOLDINGS} blobs in each list"
                )));
            }
            _ => {}
        }
        Ok(message)
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("messages are plain data")
    }
}

impl CoordinatorMessage {
    pub fn decode(text: &str) -> Result<CoordinatorMessage, DecodeError> {
        let message: CoordinatorMessage =
            serde_json::from_str(text).map_err(|e| DecodeError::Invalid(e.to_string()))?;
        if let CoordinatorMessage::Batch(batch) = &message {
            batch
                .tasks
                .validate()
                .map_err(|_| DecodeError::BadRanges(batch.batch))?;
            if batch.tasks.end() > batch.job_tasks {
                return Err(DecodeError::BadRanges(batch.batch));
            }
            if !batch.inputs.is_empty() && batch.inputs.len() as u64 != batch.tasks.len() {
                return Err(DecodeError::Inputs(batch.batch));
            }
        }
        Ok(message)
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("messages are plain data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grid_kernels::spec::PrimesParams;
    use serde_json::json;

    fn hello() -> Hello {
        Hello {
            for_users: Vec::new(),
            holds: Vec::new(),
            protocol: PROTOCOL_VERSION,
            kind: WorkerKind::Native,
            threads: 2,
            name: Some("lab-3".into()),
            session: None,
            kernels: None,
        }
    }

    #[test]
    fn messages_have_the_documented_json_shape() {
        let text = WorkerMessage::Hello(hello()).encode();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json!({"type": "hello", "protocol": PROTOCOL_VERSION, "kind": "native", "threads": 2, "name": "lab-3"})
        );
        assert_eq!(
            WorkerMessage::Heartbeat {}.encode(),
            r#"{"type":"heartbeat"}"#
        );
        let batch = CoordinatorMessage::Batch(Batch {
            owner: None,
            digest_only: None,
            capability: None,
            batch: 9,
            job: 3,
            spec: KernelSpec::Primes(PrimesParams {
                start: 0,
                end: 1000,
            }),
            job_tasks: 10,
            tasks: TaskRanges::from_indices([0, 1, 2, 7]),
            lease_ms: 30_000,
            inputs: Vec::new(),
        });
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&batch.encode()).unwrap(),
            json!({"type": "batch", "batch": 9, "job": 3,
                   "spec": {"kernel": "primes", "params": {"start": 0, "end": 1000}},
                   "job_tasks": 10, "tasks": [[0, 3], [7, 8]], "lease_ms": 30000})
        );
        assert_eq!(CoordinatorMessage::decode(&batch.encode()).unwrap(), batch);
    }

    #[test]
    fn inputs_travel_as_base64_one_per_task() {
        let batch = Batch {
            owner: None,
            digest_only: None,
            capability: None,
            batch: 9,
            job: 3,
            spec: KernelSpec::Primes(PrimesParams { start: 0, end: 10 }),
            job_tasks: 10,
            tasks: TaskRanges::from_indices([2, 5]),
            lease_ms: 30_000,
            inputs: vec![
                TaskInput::Inline(Bytes::from_static(b"hi\n")),
                TaskInput::Inline(Bytes::new()),
            ],
        };
        let text = CoordinatorMessage::Batch(batch.clone()).encode();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["inputs"], json!(["aGkK", ""]));
        assert_eq!(
            CoordinatorMessage::decode(&text).unwrap(),
            CoordinatorMessage::Batch(batch.clone())
        );
        let short = text.replace(r#","inputs":["aGkK","""#, r#","inputs":["aGkK""#);
        assert_eq!(
            CoordinatorMessage::decode(&short),
            Err(DecodeError::Inputs(9))
        );
        let garbled = text.replace("aGkK", "a!kK");
        assert!(matches!(
            CoordinatorMessage::decode(&garbled),
            Err(DecodeError::Invalid(e)) if e.contains("not base64")
        ));
    }

    #[test]
    fn large_inputs_travel_as_blobs_under_the_batch_capability() {
        let blob = ContentDigest::of(b"a large input");
        let batch = Batch {
            owner: None,
            digest_only: None,
            capability: Some("17.abcdef".into()),
            batch: 17,
            job: 3,
            spec: KernelSpec::Primes(PrimesParams { start: 0, end: 10 }),
            job_tasks: 10,
            tasks: TaskRanges::from_indices([2, 5]),
            lease_ms: 30_000,
            inputs: vec![
                TaskInput::Blob { blob, size: 13 },
                TaskInput::Inline(Bytes::from_static(b"hi\n")),
            ],
        };
        let text = CoordinatorMessage::Batch(batch.clone()).encode();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["inputs"],
            json!([{"blob": blob.to_string(), "size": 13}, "aGkK"])
        );
        assert_eq!(json["capability"], "17.abcdef");
        assert_eq!(
            CoordinatorMessage::decode(&text).unwrap(),
            CoordinatorMessage::Batch(batch)
        );
        let odd = text.replace(r#""size":13"#, r#""size":13,"offset":0"#);
        assert!(CoordinatorMessage::decode(&odd).is_err());
    }

    #[test]
    fn holdings_are_bounded() {
        let digest = ContentDigest::of(b"x");
        let holding = WorkerMessage::Holding {
            added: vec![digest],
            removed: Vec::new(),
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&holding.encode()).unwrap(),
            json!({"type": "holding", "added": [digest.to_string()]})
        );
        assert_eq!(WorkerMessage::decode(&holding.encode()).unwrap(), holding);
        let too_many = WorkerMessage::Holding {
            added: Vec::new(),
            removed: vec![digest; MAX_HOLDINGS + 1],
        };
        assert!(matches!(
            WorkerMessage::decode(&too_many.encode()),
            Err(DecodeError::Invalid(e)) if e.contains("at most")
        ));
        let mut hello = hello();
        hello.holds = vec![digest; MAX_HOLDINGS + 1];
        assert_eq!(hello.validate().unwrap_err().0, CloseCode::BadHello);
        hello.holds.truncate(MAX_HOLDINGS);
        assert!(hello.validate().is_ok());
        assert!(WorkerMessage::Hello(hello).encode().len() < MAX_TEXT_FRAME_BYTES);
    }

    #[test]
    fn a_hello_limits_its_worker_to_users_under_for() {
        let mut hello = hello();
        assert!(!WorkerMessage::Hello(hello.clone()).encode().contains("for"));
        hello.for_users = vec!["alice".into(), "bob".into()];
        let text = WorkerMessage::Hello(hello.clone()).encode();
        assert!(text.contains(r#""for":["alice","bob"]"#), "{text}");
        assert_eq!(
            WorkerMessage::decode(&text).unwrap(),
            WorkerMessage::Hello(hello.clone())
        );
        assert!(hello.validate().is_ok());
        for bad in [
            vec![String::new()],
            vec!["a\nb".to_string()],
            vec!["x".repeat(MAX_NAME_CHARS + 1)],
            vec!["u".to_string(); MAX_FOR_USERS + 1],
        ] {
            hello.for_users = bad.clone();
            let (code, reason) = hello.validate().unwrap_err();
            assert_eq!(code, CloseCode::BadHello, "{bad:?}");
            assert!(reason.starts_with("for"), "{reason}");
        }
    }

    #[test]
    fn a_batch_names_its_owner_only_when_told() {
        let mut batch = Batch {
            batch: 1,
            job: 2,
            spec: KernelSpec::Primes(PrimesParams { start: 0, end: 10 }),
            job_tasks: 1,
            tasks: TaskRanges::from_ranges(vec![(0, 1)]).unwrap(),
            lease_ms: 1000,
            inputs: Vec::new(),
            capability: None,
            digest_only: None,
            owner: None,
        };
        let text = CoordinatorMessage::Batch(batch.clone()).encode();
        assert!(!text.contains("owner"), "{text}");
        batch.owner = Some("alice".into());
        let text = CoordinatorMessage::Batch(batch.clone()).encode();
        assert!(text.contains(r#""owner":"alice""#), "{text}");
        assert_eq!(
            CoordinatorMessage::decode(&text).unwrap(),
            CoordinatorMessage::Batch(batch)
        );
    }

    #[test]
    fn a_hello_without_kernels_runs_the_built_in_ones() {
        let mut hello = hello();
        assert!(hello.runs(KernelKind::Primes));
        assert!(!hello.runs(KernelKind::Wasm));
        hello.kernels = Some(vec![KernelKind::Wasm]);
        assert!(hello.runs(KernelKind::Wasm));
        assert!(!hello.runs(KernelKind::Primes));
        let text = WorkerMessage::Hello(hello.clone()).encode();
        assert!(text.contains(r#""kernels":["wasm"]"#), "{text}");
        assert_eq!(
            WorkerMessage::decode(&text).unwrap(),
            WorkerMessage::Hello(hello)
        );
    }

    #[test]
    fn every_worker_message_round_trips() {
        let messages = [
            WorkerMessage::Hello(hello()),
            WorkerMessage::Heartbeat {},
            WorkerMessage::Return {
                batch: 4,
                tasks: TaskRanges::from_indices([3, 4]),
            },
            WorkerMessage::Failed {
                batch: 4,
                task: 3,
                error: "boom".into(),
            },
            WorkerMessage::Pause {},
            WorkerMessage::Resume {},
        ];
        for message in messages {
            assert_eq!(WorkerMessage::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn bad_frames_are_decode_errors_not_panics() {
        for text in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"type":"launch"}"#,
            r#"{"type":"hello","protocol":2}"#,
            r#"{"type":"hello","protocol":"1","kind":"native","threads":2}"#,
            r#"{"type":"hello","protocol":2,"kind":"toaster","threads":2}"#,
            r#"{"type":"heartbeat","extra":1}"#,
            r#"{"type":"return","batch":1,"tasks":[[5,2]]}"#,
            r#"{"type":"return","batch":1,"tasks":[[0,4294967296]]}"#,
            "\u{0}\u{1}garbage",
        ] {
            let err = WorkerMessage::decode(text).unwrap_err();
            assert_eq!(err.close_code(), CloseCode::MalformedFrame, "{text}: {err}");
        }
        let huge = format!(
            r#"{{"type":"failed","batch":1,"task":1,"error":"{}"}}"#,
            "x".repeat(MAX_TEXT_FRAME_BYTES)
        );
        assert_eq!(
            WorkerMessage::decode(&huge).unwrap_err().close_code(),
            CloseCode::FrameTooLarge
        );
    }

    /// JSON that looks like a message: a known or unknown `type`, fields
    /// with plausible names and values of any type.
    fn message_like() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "[a-z_]{0,12}".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        let names = prop_oneof![
            Just("type"),
            Just("protocol"),
            Just("kind"),
            Just("threads"),
            Just("name"),
            Just("session"),
            Just("batch"),
            Just("tasks"),
            Just("task"),
            Just("error"),
            Just("extra"),
        ];
        let kinds = prop_oneof![
            Just("hello"),
            Just("heartbeat"),
            Just("return"),
            Just("failed"),
            Just("pause"),
            Just("resume"),
            Just("batch"),
            Just("welcome"),
            Just("ack"),
            Just("launch"),
        ];
        (kinds, proptest::collection::vec((names, value), 0..7)).prop_map(|(kind, fields)| {
            let mut object = serde_json::Map::new();
            object.insert("type".into(), kind.into());
            for (name, value) in fields {
                object.insert(name.into(), value);
            }
            serde_json::Value::Object(object)
        })
    }

    proptest::proptest! {
        /// Decoding never panics, and whatever decodes re-encodes to
        /// something that decodes to the same message.
        #[test]
        fn decoding_message_like_json_never_panics(value in message_like()) {
            let text = value.to_string();
            if let Ok(message) = WorkerMessage::decode(&text) {
                proptest::prop_assert_eq!(WorkerMessage::decode(&message.encode()).unwrap(), message);
            }
            let _ = CoordinatorMessage::decode(&text);
        }

        #[test]
        fn decoding_arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = WorkerMessage::decode(&text);
            let _ = CoordinatorMessage::decode(&text);
        }
    }

    /// What PROTOCOL.md's `return` section says about ranges: each bad
    /// shape is a decode error closing with 4000, with the reason it names;
    /// an empty list is well formed.
    #[test]
    fn return_ranges_are_checked_when_decoded() {
        let decode = |tasks: &str| {
            WorkerMessage::decode(&format!(r#"{{"type":"return","batch":1,"tasks":{tasks}}}"#))
        };
        for bad in [
            "[[3,3]]",
            "[[5,2]]",
            "[[5,9],[0,2]]",
            "[[0,5],[3,8]]",
            "[[0,4],[4,6]]",
            "[[0,2],[0,2]]",
            "[[0,2],[7,7]]",
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err, DecodeError::BadRanges(1), "{bad}");
            assert_eq!(err.close_code(), CloseCode::MalformedFrame, "{bad}");
            assert_eq!(err.to_string(), "invalid task ranges in batch 1", "{bad}");
        }
        for bad in [
            "[[1,2,3]]",
            "[[1]]",
            "[0,3]",
            "[[-1,2]]",
            "[[0.5,2]]",
            "[[0,4294967296]]",
            "null",
            r#"[["0","3"]]"#,
        ] {
            let err = decode(bad).unwrap_err();
            assert!(matches!(err, DecodeError::Invalid(_)), "{bad}: {err:?}");
            assert_eq!(err.close_code(), CloseCode::MalformedFrame, "{bad}");
            assert!(err.to_string().starts_with("invalid message: "), "{bad}");
        }
        for (good, tasks) in [
            ("[]", vec![]),
            ("[[0,6]]", vec![(0, 6)]),
            ("[[0,4],[5,6]]", vec![(0, 4), (5, 6)]),
            ("[[4294967294,4294967295]]", vec![(u32::MAX - 1, u32::MAX)]),
        ] {
            assert_eq!(
                decode(good).unwrap(),
                WorkerMessage::Return {
                    batch: 1,
                    tasks: TaskRanges::from_ranges(tasks).unwrap(),
                },
                "{good}"
            );
        }
    }

    #[test]
    fn hello_values_are_checked() {
        hello().validate().unwrap();
        // Version 1 (before users' kernels) and a later one are refused.
        for version in [1, PROTOCOL_VERSION + 1] {
            let mut h = hello();
            h.protocol = version;
            assert_eq!(h.validate().unwrap_err().0, CloseCode::UnsupportedVersion);
        }
        let mut h = hello();
        h.threads = 0;
        assert_eq!(h.validate().unwrap_err().0, CloseCode::BadHello);
        let mut h = hello();
        h.name = Some("n".repeat(MAX_NAME_CHARS + 1));
        assert_eq!(h.validate().unwrap_err().0, CloseCode::BadHello);
        let mut h = hello();
        h.session = Some("tab\n1".into());
        assert_eq!(h.validate().unwrap_err().0, CloseCode::BadHello);
    }
}
