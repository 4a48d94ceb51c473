//! `/data`, the job's read-only files, as WASI describes them: which file a
//! path names ([`DataDir::resolve`]), a file's `filestat` ([`Filestat`]),
//! the directory's listing as `fd_readdir` writes it ([`DataDir::listing`])
//! and the preopen's `prestat`. Pure data, no memory and no fds: `host`
//! checks the kernel's pointers and writes the bytes made here.
//!
//! The directory is flat: one level, the job's files sorted by name
//! ([`crate::DataFile`], names checked by
//! [`grid_kernels::wasm::check_file_name`]). Every node has `dev` 1 and an
//! inode number that never changes: 1 for the directory, 2 + its index for
//! a file; one link; all three times 0; a directory's size is 0.

use std::fmt;

use grid_kernels::wasm::{DATA_DIR, MAX_FILE_NAME_BYTES};

use crate::config::DataFile;
use crate::errno::Errno;
use crate::fd::{FILETYPE_CHARACTER_DEVICE, FILETYPE_DIRECTORY, FILETYPE_REGULAR_FILE};

/// The longest path `path_open` and `path_filestat_get` take, in bytes
/// (Linux's `PATH_MAX`); longer is `nametoolong`, before the path is read.
pub const PATH_MAX: u32 = 4096;

/// What a path names in `/data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    /// The file at this index.
    File(usize),
}

/// The job's files, sorted by name; shared, never copied.
#[derive(Clone)]
pub(crate) struct DataDir {
    files: Vec<DataFile>,
}

impl fmt::Debug for DataDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and lengths, not contents: a file may be gigabytes.
        f.debug_map()
            .entries(self.files.iter().map(|file| (&file.name, file.bytes.len())))
            .finish()
    }
}

impl DataDir {
    /// `files` must be sorted by name, each name once (`TaskConfig::validate`).
    pub(crate) fn new(files: Vec<DataFile>) -> DataDir {
        DataDir { files }
    }

    /// The bytes of file `index`.
    pub(crate) fn bytes(&self, index: usize) -> &[u8] {
        &self.files[index].bytes
    }

    /// What `path`, relative to `/data`, names. Components are split at
    /// `/`; empty ones and `.` stay where they are; a file name moves to
    /// the file. Checked in order from the left:
    /// - empty: `noent` (as POSIX);
    /// - starting with `/` (absolute), or a `..` (which can only leave
    ///   `/data`: a file has no `..`): `perm`, as wasmtime answers a path
    ///   that escapes its preopen;
    /// - anything after a file, even `/` or `.`: `notdir`;
    /// - a name longer than a file name may be (255 bytes):
    ///   `nametoolong`, as POSIX hosts answer;
    /// - a name that is no file's: `noent`.
    pub(crate) fn resolve(&self, path: &[u8]) -> Result<Node, Errno> {
        if path.is_empty() {
            return Err(Errno::Noent);
        }
        if path[0] == b'/' {
            return Err(Errno::Perm);
        }
        let mut node = Node::Dir;
        for component in path.split(|&b| b == b'/') {
            if let Node::File(_) = node {
                return Err(Errno::Notdir);
            }
            match component {
                b"" | b"." => {}
                b".." => return Err(Errno::Perm),
                name if name.len() > MAX_FILE_NAME_BYTES => return Err(Errno::Nametoolong),
                name => node = Node::File(self.find(name).ok_or(Errno::Noent)?),
            }
        }
        Ok(node)
    }

    fn find(&self, name: &[u8]) -> Option<usize> {
        self.files
            .binary_search_by(|file| file.name.as_bytes().cmp(name))
            .ok()
    }

    /// The `filestat` of a node.
    pub(crate) fn filestat(&self, node: Node) -> Filestat {
        let (filetype, size) = match node {
            Node::Dir => (FILETYPE_DIRECTORY, 0),
            Node::File(index) => (FILETYPE_REGULAR_FILE, self.files[index].bytes.len() as u64),
        };
        Filestat {
            dev: 1,
            ino: inode(node),
            filetype,
            nlink: 1,
            size,
        }
    }

    /// The directory's entries: `.`, `..` (the directory itself: nothing
    /// outside `/data` can be seen), then the files by name. Entry `i`'s
    /// cookie (`d_next`) is `i + 1`, so a listing goes on from any entry.
    fn entry(&self, i: usize) -> Option<(&[u8], Node)> {
        match i {
            0 => Some((b".", Node::Dir)),
            1 => Some((b"..", Node::Dir)),
            _ => self
                .files
                .get(i - 2)
                .map(|file| (file.name.as_bytes(), Node::File(i - 2))),
        }
    }

    /// What `fd_readdir` writes for `cookie` into `buf_len` bytes: the
    /// entries from number `cookie` on, each a 24-byte `dirent` (`d_next`
    /// u64 at 0, `d_ino` u64 at 8, `d_namlen` u32 at 16, `d_type` u8 at 20,
    /// 3 bytes of zeros) and its name with no NUL, until they end or the
    /// buffer is full; the entry that does not fit is cut at `buf_len`, as
    /// the spec allows, so a full buffer means the caller should ask again
    /// from the last whole entry's `d_next`. A cookie past the end gives
    /// nothing. At most `buf_len` bytes, and at most the whole listing
    /// (about 18 KB for 64 files of 255-byte names), are made.
    pub(crate) fn listing(&self, cookie: u64, buf_len: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let limit = buf_len as usize;
        let mut i = usize::try_from(cookie).unwrap_or(usize::MAX);
        while out.len() < limit {
            let Some((name, node)) = self.entry(i) else {
                break;
            };
            let filetype = self.filestat(node).filetype;
            out.extend_from_slice(&(i as u64 + 1).to_le_bytes());
            out.extend_from_slice(&inode(node).to_le_bytes());
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(&[filetype, 0, 0, 0]);
            out.extend_from_slice(name);
            i += 1;
        }
        out.truncate(limit);
        out
    }
}

fn inode(node: Node) -> u64 {
    match node {
        Node::Dir => 1,
        Node::File(index) => index as u64 + 2,
    }
}

/// The name `fd_prestat_dir_name` writes: `/data`, with no NUL.
pub(crate) const PREOPEN_NAME: &[u8] = DATA_DIR.as_bytes();

/// The preopen's 8-byte `prestat`: tag 0 (`dir`) at 0, three bytes of
/// zeros, the name's length u32 at 4.
pub(crate) fn prestat() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    bytes[4..8].copy_from_slice(&(PREOPEN_NAME.len() as u32).to_le_bytes());
    bytes
}

/// WASI's `filestat`; the three times are always 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Filestat {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) filetype: u8,
    pub(crate) nlink: u64,
    pub(crate) size: u64,
}

impl Filestat {
    /// A standard stream's: a character device, every number 0.
    pub(crate) const STREAM: Filestat = Filestat {
        dev: 0,
        ino: 0,
        filetype: FILETYPE_CHARACTER_DEVICE,
        nlink: 0,
        size: 0,
    };

    /// Its 64 bytes: `dev` u64 at 0, `ino` u64 at 8, `filetype` u8 at 16
    /// (then 7 bytes of zeros), `nlink` u64 at 24, `size` u64 at 32, `atim`,
    /// `mtim` and `ctim` u64s at 40, 48 and 56, little-endian.
    pub(crate) fn to_bytes(self) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[0..8].copy_from_slice(&self.dev.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.ino.to_le_bytes());
        bytes[16] = self.filetype;
        bytes[24..32].copy_from_slice(&self.nlink.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.size.to_le_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(names: &[&str]) -> DataDir {
        DataDir::new(
            names
                .iter()
                .map(|name| DataFile {
                    name: name.to_string(),
                    bytes: bytes::Bytes::from(name.repeat(2)),
                })
                .collect(),
        )
    }

    #[test]
    fn paths_resolve_to_the_directory_or_one_file() {
        let d = dir(&["a", "b.txt", "c"]);
        for (path, node) in [
            (&b"."[..], Node::Dir),
            (b"./", Node::Dir),
            (b"././/.", Node::Dir),
            (b"a", Node::File(0)),
            (b"./b.txt", Node::File(1)),
            (b".//c", Node::File(2)),
        ] {
            assert_eq!(
                d.resolve(path),
                Ok(node),
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
        for (path, errno) in [
            (&b""[..], Errno::Noent),
            (b"d", Errno::Noent),
            (b"A", Errno::Noent),
            (b"b", Errno::Noent),
            (b"b.txt\0", Errno::Noent),
            (b"\xff", Errno::Noent),
            (b"/", Errno::Perm),
            (b"/data/a", Errno::Perm),
            (b"..", Errno::Perm),
            (b"./../data/a", Errno::Perm),
            (b"a/", Errno::Notdir),
            (b"a/.", Errno::Notdir),
            (b"a/..", Errno::Notdir),
            (b"a/b.txt", Errno::Notdir),
            (b"d/..", Errno::Noent),
            (b"../d", Errno::Perm),
            (&[b'x'; 256], Errno::Nametoolong),
            (b"a/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", Errno::Notdir),
        ] {
            assert_eq!(
                d.resolve(path),
                Err(errno),
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
        let longest = "y".repeat(255);
        assert_eq!(
            dir(&[&longest]).resolve(longest.as_bytes()),
            Ok(Node::File(0))
        );
        assert_eq!(d.resolve(longest.as_bytes()), Err(Errno::Noent));
        assert_eq!(dir(&[]).resolve(b"."), Ok(Node::Dir));
        assert_eq!(dir(&[]).resolve(b"a"), Err(Errno::Noent));
    }

    #[test]
    fn filestat_has_the_witx_layout() {
        let d = dir(&["a", "bb"]);
        let stat = d.filestat(Node::File(1)).to_bytes();
        let mut expected = [0u8; 64];
        expected[0] = 1; // dev
        expected[8] = 3; // ino: 2 + index
        expected[16] = 4; // regular file
        expected[24] = 1; // nlink
        expected[32] = 4; // size: "bbbb"
        assert_eq!(stat, expected);
        let mut expected = [0u8; 64];
        expected[0] = 1;
        expected[8] = 1;
        expected[16] = 3;
        expected[24] = 1;
        assert_eq!(d.filestat(Node::Dir).to_bytes(), expected);
        let mut expected = [0u8; 64];
        expected[16] = 2;
        assert_eq!(Filestat::STREAM.to_bytes(), expected);
    }

    /// One dirent, written out by hand.
    fn dirent(next: u8, ino: u8, name: &[u8], filetype: u8) -> Vec<u8> {
        let mut bytes = vec![0u8; 24];
        bytes[0] = next;
        bytes[8] = ino;
        bytes[16] = name.len() as u8;
        bytes[20] = filetype;
        bytes.extend_from_slice(name);
        bytes
    }

    #[test]
    fn the_listing_is_dot_dotdot_then_the_files_by_name() {
        let d = dir(&["a", "bb"]);
        let all = [
            dirent(1, 1, b".", 3),
            dirent(2, 1, b"..", 3),
            dirent(3, 2, b"a", 4),
            dirent(4, 3, b"bb", 4),
        ]
        .concat();
        assert_eq!(all.len(), 4 * 24 + 6);
        assert_eq!(d.listing(0, 1000), all);
        assert_eq!(d.listing(0, all.len() as u32), all);
        // From each cookie on, and cut at the buffer's end.
        assert_eq!(d.listing(2, 1000), all[24 + 25 + 2..]);
        assert_eq!(d.listing(3, 1000), dirent(4, 3, b"bb", 4));
        assert!(d.listing(4, 1000).is_empty());
        assert!(d.listing(u64::MAX, 1000).is_empty());
        for len in [0, 1, 23, 24, 25, 60, 101] {
            assert_eq!(d.listing(0, len), all[..len as usize], "{len}");
        }
        assert_eq!(dir(&[]).listing(0, 100), all[..24 + 1 + 24 + 2]);
    }

    #[test]
    fn debug_shows_names_and_lengths_not_bytes() {
        assert_eq!(format!("{:?}", dir(&["a", "bb"])), r#"{"a": 2, "bb": 4}"#);
    }

    #[test]
    fn the_preopen_is_named_data() {
        assert_eq!(PREOPEN_NAME, b"/data");
        assert_eq!(prestat(), [0, 0, 0, 0, 5, 0, 0, 0]);
    }
}
