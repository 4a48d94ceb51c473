//! The files of a wasm job (`WasmParams::files`) as one session's Web
//! Worker keeps them, without I/O: which it has (as handles `B`, a
//! browser `Blob` checked by the page), which it asked the page for, and
//! which its kernel thread already holds, so that each file goes to the
//! kernel thread once per kernel thread and job, never once per task.
//!
//! The rules:
//! - The files of one job are kept: when a task of a job with other files
//!   comes, the handles of files it does not mount are dropped (the
//!   kernel thread drops their bytes on that task too).
//! - Each file is asked for once while its answer is awaited, however many
//!   tasks want it meanwhile ([`JobFiles::need`] answers [`Need::Wait`]).
//! - A failed answer fails the task that waits for it, once: the next task
//!   asks again (the page refuses a blob the coordinator sent wrong for a
//!   while, so this does not fetch it for every task).
//! - The kernel thread keeps exactly the files of the last task it was
//!   given. [`JobFiles::sent`] records that; a new kernel thread holds
//!   nothing ([`JobFiles::kernel_replaced`]).
//! - A kernel thread that answered with a fault holds nothing either, and
//!   the handles themselves may be at fault (a file the page evicted or the
//!   donor cleared cannot be read through its old `Blob`): everything is
//!   forgotten ([`JobFiles::forget`]) and asked of the page again.

use std::collections::{HashMap, HashSet};

use grid_kernels::ContentDigest;
use grid_kernels::wasm::MountedFile;

/// What a task's files need before it can go to the kernel thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need<B> {
    /// All here: the handles to send with the task, for the files its
    /// kernel thread does not hold yet.
    Ready(Vec<(ContentDigest, B)>),
    /// Ask the page for these, then wait (empty: asked already).
    Fetch(Vec<(ContentDigest, u64)>),
    /// A file could not be had: fail the task with the sentence.
    Failed(String),
}

/// One session's files of the job it works on.
#[derive(Debug, Clone)]
pub struct JobFiles<B> {
    have: HashMap<ContentDigest, B>,
    asked: HashSet<ContentDigest>,
    failed: HashMap<ContentDigest, String>,
    on_kernel: HashSet<ContentDigest>,
}

impl<B> Default for JobFiles<B> {
    fn default() -> Self {
        JobFiles {
            have: HashMap::new(),
            asked: HashSet::new(),
            failed: HashMap::new(),
            on_kernel: HashSet::new(),
        }
    }
}

impl<B: Clone> JobFiles<B> {
    pub fn new() -> JobFiles<B> {
        JobFiles::default()
    }

    /// What a task mounting `files` needs.
    pub fn need(&mut self, files: &[MountedFile]) -> Need<B> {
        let wanted: HashSet<ContentDigest> = files.iter().map(|f| f.blob).collect();
        self.have.retain(|d, _| wanted.contains(d));
        if let Some(file) = files.iter().find(|f| self.failed.contains_key(&f.blob)) {
            let reason = self.failed.remove(&file.blob).expect("found");
            return Need::Failed(format!(
                "the file {:?} ({}): {reason}",
                file.name, file.blob
            ));
        }
        let missing: Vec<&MountedFile> = files
            .iter()
            .filter(|f| !self.have.contains_key(&f.blob))
            .collect();
        if missing.is_empty() {
            let mut send: Vec<(ContentDigest, B)> = Vec::new();
            for file in files {
                if !self.on_kernel.contains(&file.blob)
                    && !send.iter().any(|(d, _)| *d == file.blob)
                {
                    send.push((file.blob, self.have[&file.blob].clone()));
                }
            }
            return Need::Ready(send);
        }
        let mut ask = Vec::new();
        for file in missing {
            if self.asked.insert(file.blob) {
                ask.push((file.blob, file.size));
            }
        }
        Need::Fetch(ask)
    }

    /// The page answered for `digest`: its handle, or why it cannot be had.
    pub fn answer(&mut self, digest: ContentDigest, answer: Result<B, String>) {
        if !self.asked.remove(&digest) {
            return;
        }
        match answer {
            Ok(handle) => {
                self.have.insert(digest, handle);
            }
            Err(reason) => {
                self.failed.insert(digest, reason);
            }
        }
    }

    /// A task mounting `files` went to the kernel thread with what
    /// [`Need::Ready`] listed: it now holds exactly these.
    pub fn sent(&mut self, files: &[MountedFile]) {
        self.on_kernel = files.iter().map(|f| f.blob).collect();
    }

    /// The kernel thread was replaced, or answered with a fault: it holds
    /// nothing.
    pub fn kernel_replaced(&mut self) {
        self.on_kernel.clear();
    }

    /// Forgets every handle and what the kernel thread holds (answers
    /// awaited are still taken).
    pub fn forget(&mut self) {
        self.have.clear();
        self.failed.clear();
        self.on_kernel.clear();
    }

    /// Whether an answer is awaited.
    pub fn is_waiting(&self) -> bool {
        !self.asked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, n: u8) -> MountedFile {
        MountedFile {
            name: name.into(),
            blob: ContentDigest::of(&[n]),
            size: u64::from(n) * 10,
        }
    }

    fn d(n: u8) -> ContentDigest {
        ContentDigest::of(&[n])
    }

    #[test]
    fn each_file_is_asked_for_once_and_sent_to_the_kernel_thread_once() {
        let mut files = JobFiles::<&str>::new();
        let job = [file("a", 1), file("b", 2)];
        assert_eq!(files.need(&job), Need::Fetch(vec![(d(1), 10), (d(2), 20)]));
        assert_eq!(files.need(&job), Need::Fetch(vec![]), "asked already");
        assert!(files.is_waiting());
        files.answer(d(1), Ok("blob a"));
        assert_eq!(files.need(&job), Need::Fetch(vec![]));
        files.answer(d(2), Ok("blob b"));
        assert!(!files.is_waiting());
        assert_eq!(
            files.need(&job),
            Need::Ready(vec![(d(1), "blob a"), (d(2), "blob b")])
        );
        files.sent(&job);
        // The next 399 tasks send nothing.
        assert_eq!(files.need(&job), Need::Ready(vec![]));
        // A fresh kernel thread gets them again, from here.
        files.kernel_replaced();
        assert_eq!(
            files.need(&job),
            Need::Ready(vec![(d(1), "blob a"), (d(2), "blob b")])
        );
    }

    #[test]
    fn another_jobs_files_replace_the_last_ones() {
        let mut files = JobFiles::<&str>::new();
        let first = [file("a", 1), file("b", 2)];
        files.need(&first);
        files.answer(d(1), Ok("a"));
        files.answer(d(2), Ok("b"));
        files.need(&first);
        files.sent(&first);
        // A job sharing one file: only the new one is fetched and sent.
        let second = [file("b", 2), file("c", 3)];
        assert_eq!(files.need(&second), Need::Fetch(vec![(d(3), 30)]));
        files.answer(d(3), Ok("c"));
        assert_eq!(files.need(&second), Need::Ready(vec![(d(3), "c")]));
        files.sent(&second);
        // Back to the first job: "a" was dropped, so it is asked for again.
        assert_eq!(files.need(&first), Need::Fetch(vec![(d(1), 10)]));
        // A job with no files needs nothing, and drops everything.
        assert_eq!(files.need(&[]), Need::Ready(vec![]));
        files.answer(d(1), Ok("a"));
        assert_eq!(
            files.need(&second),
            Need::Fetch(vec![(d(2), 20), (d(3), 30)])
        );
    }

    #[test]
    fn a_failed_answer_fails_one_task_and_the_next_asks_again() {
        let mut files = JobFiles::<&str>::new();
        let job = [file("scene.bin", 1)];
        files.need(&job);
        files.answer(d(1), Err("the coordinator sent other bytes twice".into()));
        match files.need(&job) {
            Need::Failed(reason) => {
                assert!(reason.contains("\"scene.bin\""), "{reason}");
                assert!(reason.contains(&d(1).to_string()), "{reason}");
                assert!(reason.contains("other bytes twice"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(files.need(&job), Need::Fetch(vec![(d(1), 10)]));
        // An answer nobody asked for is ignored.
        files.answer(d(9), Ok("stray"));
        files.answer(d(1), Ok("scene"));
        assert_eq!(files.need(&job), Need::Ready(vec![(d(1), "scene")]));
    }

    #[test]
    fn after_a_fault_every_file_is_asked_for_again() {
        let mut files = JobFiles::<&str>::new();
        let job = [file("a", 1)];
        files.need(&job);
        files.answer(d(1), Ok("stale"));
        files.need(&job);
        files.sent(&job);
        files.forget();
        assert_eq!(files.need(&job), Need::Fetch(vec![(d(1), 10)]));
        files.answer(d(1), Ok("fresh"));
        assert_eq!(files.need(&job), Need::Ready(vec![(d(1), "fresh")]));
    }

    #[test]
    fn a_file_mounted_twice_is_sent_once() {
        let mut files = JobFiles::<&str>::new();
        let job = [file("a", 1), file("same-bytes", 1)];
        assert_eq!(files.need(&job), Need::Fetch(vec![(d(1), 10)]));
        files.answer(d(1), Ok("x"));
        assert_eq!(files.need(&job), Need::Ready(vec![(d(1), "x")]));
    }
}
