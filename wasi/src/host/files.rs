//! The functions of `/data` and its files, on [`Wasi`]: the preopen
//! (`fd_prestat_get`, `fd_prestat_dir_name`), opening (`path_open`),
//! reading (`fd_read` of a file, `fd_pread`), the offset (`fd_seek`,
//! `fd_tell`), stats (`fd_filestat_get`, `path_filestat_get`), listing
//! (`fd_readdir`) and `fd_advise`. Each checks its arguments in the order
//! the crate's header gives, all of them before it changes anything; what
//! it copies out of a file is charged first ([`Wasi::charge_read`]).
//!
//! Two rules for fds of the wrong kind: a path or listing function given
//! an open fd that is not a directory answers `notdir`; a file function
//! given a stream answers `spipe` (a stream has no offset) and given a
//! directory `isdir`.

use crate::data::{self, Filestat, Node, PATH_MAX};
use crate::errno::Errno;
use crate::fd::{DIR_RIGHTS, FILE_RIGHTS, Fd, FdKind, WRITE_RIGHTS};
use crate::iovec::{self, Iovec};
use crate::memory::{self, Memory};

use super::{Fail, Wasi};

/// `lookupflags::symlink_follow`: the one lookup flag (there are no links).
const LOOKUP_FLAGS: u32 = 1;
/// `oflags`: `creat`, `directory`, `excl`, `trunc`.
const OFLAGS_CREAT: u32 = 1 << 0;
const OFLAGS_DIRECTORY: u32 = 1 << 1;
const OFLAGS_EXCL: u32 = 1 << 2;
const OFLAGS_TRUNC: u32 = 1 << 3;
const OFLAGS: u32 = OFLAGS_CREAT | OFLAGS_DIRECTORY | OFLAGS_EXCL | OFLAGS_TRUNC;
/// `fdflags`: `append`, `dsync`, `nonblock`, `rsync`, `sync`.
const FDFLAGS_APPEND: u32 = 1 << 0;
const FDFLAGS: u32 = 0x1f;
/// `whence`: `set`, `cur`, `end`.
const WHENCE_SET: u32 = 0;
const WHENCE_CUR: u32 = 1;
const WHENCE_END: u32 = 2;
/// `advice`: `normal` (0) to `noreuse` (5).
const ADVICE_MAX: u32 = 5;

/// The arguments of `path_open`, in order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathOpen {
    pub(crate) dirfd: u32,
    pub(crate) dirflags: u32,
    pub(crate) path: u32,
    pub(crate) path_len: u32,
    pub(crate) oflags: u32,
    pub(crate) rights_base: u64,
    pub(crate) rights_inheriting: u64,
    pub(crate) fdflags: u32,
    pub(crate) fd_out: u32,
}

impl Wasi {
    /// `badf` unless `fd` is open; `notdir` unless it is `/data`.
    fn dir_fd(&self, fd: u32) -> Result<(), Errno> {
        match self.fds.get(fd)?.kind {
            FdKind::Dir { .. } => Ok(()),
            FdKind::Stdin | FdKind::Stdout | FdKind::Stderr | FdKind::File { .. } => {
                Err(Errno::Notdir)
            }
        }
    }

    /// The file `fd` reads and its offset: `badf` unless open, `spipe` for
    /// a stream, `isdir` for `/data`.
    fn file_fd(&self, fd: u32) -> Result<(usize, u64), Errno> {
        match self.fds.get(fd)?.kind {
            FdKind::File { file, position } => Ok((file, position)),
            FdKind::Dir { .. } => Err(Errno::Isdir),
            FdKind::Stdin | FdKind::Stdout | FdKind::Stderr => Err(Errno::Spipe),
        }
    }

    /// `badf` unless `fd` is the preopened `/data` (fd 3 until closed).
    fn preopen_fd(&self, fd: u32) -> Result<(), Errno> {
        match self.fds.get(fd)?.kind {
            FdKind::Dir { preopen: true } => Ok(()),
            _ => Err(Errno::Badf),
        }
    }

    pub(super) fn fd_prestat_get<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        prestat: u32,
    ) -> Result<(), Fail> {
        self.preopen_fd(fd)?;
        memory::write_bytes(memory, prestat, &data::prestat())?;
        Ok(())
    }

    pub(super) fn fd_prestat_dir_name<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        path: u32,
        path_len: u32,
    ) -> Result<(), Fail> {
        self.preopen_fd(fd)?;
        if (path_len as usize) < data::PREOPEN_NAME.len() {
            return Err(Errno::Nametoolong.into());
        }
        memory::check(memory, path, path_len.into())?;
        memory::write_bytes(memory, path, data::PREOPEN_NAME)?;
        Ok(())
    }

    pub(super) fn path_open<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        args: PathOpen,
    ) -> Result<(), Fail> {
        self.dir_fd(args.dirfd)?;
        lookup_flags(args.dirflags)?;
        let path = read_path(memory, args.path, args.path_len)?;
        if args.oflags & !OFLAGS != 0 {
            return Err(Errno::Inval.into());
        }
        if args.oflags & (OFLAGS_CREAT | OFLAGS_EXCL | OFLAGS_TRUNC) != 0 {
            return Err(Errno::Perm.into());
        }
        if args.rights_base & WRITE_RIGHTS != 0 {
            return Err(Errno::Perm.into());
        }
        if args.fdflags & !FDFLAGS != 0 {
            return Err(Errno::Inval.into());
        }
        if args.fdflags & FDFLAGS_APPEND != 0 {
            return Err(Errno::Perm.into());
        }
        memory::check(memory, args.fd_out, 4)?;
        let node = self.data.resolve(&path)?;
        let kind = match node {
            Node::File(_) if args.oflags & OFLAGS_DIRECTORY != 0 => {
                return Err(Errno::Notdir.into());
            }
            Node::File(file) => FdKind::File { file, position: 0 },
            Node::Dir => FdKind::Dir { preopen: false },
        };
        // What the fd cannot do is dropped; a file passes nothing on.
        let (rights_base, rights_inheriting) = match kind {
            FdKind::File { .. } => (args.rights_base & FILE_RIGHTS, 0),
            _ => (
                args.rights_base & DIR_RIGHTS,
                args.rights_inheriting & (DIR_RIGHTS | FILE_RIGHTS),
            ),
        };
        let opened = self.fds.open(Fd {
            kind,
            // Only nonblock, dsync, rsync and sync are left: kept, no effect.
            flags: args.fdflags as u16,
            rights_base,
            rights_inheriting,
        })?;
        memory::write_u32(memory, args.fd_out, opened)?;
        Ok(())
    }

    pub(super) fn path_filestat_get<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        dirfd: u32,
        flags: u32,
        path: u32,
        path_len: u32,
        stat: u32,
    ) -> Result<(), Fail> {
        self.dir_fd(dirfd)?;
        lookup_flags(flags)?;
        let path = read_path(memory, path, path_len)?;
        memory::check(memory, stat, 64)?;
        let node = self.data.resolve(&path)?;
        memory::write_bytes(memory, stat, &self.data.filestat(node).to_bytes())?;
        Ok(())
    }

    pub(super) fn fd_filestat_get<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        stat: u32,
    ) -> Result<(), Fail> {
        let filestat = match self.fds.get(fd)?.kind {
            FdKind::Stdin | FdKind::Stdout | FdKind::Stderr => Filestat::STREAM,
            FdKind::Dir { .. } => self.data.filestat(Node::Dir),
            FdKind::File { file, .. } => self.data.filestat(Node::File(file)),
        };
        memory::write_bytes(memory, stat, &filestat.to_bytes())?;
        Ok(())
    }

    pub(super) fn fd_readdir<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        buf: u32,
        buf_len: u32,
        cookie: u64,
        bufused: u32,
    ) -> Result<(), Fail> {
        self.dir_fd(fd)?;
        memory::check(memory, buf, buf_len.into())?;
        memory::check(memory, bufused, 4)?;
        let listing = self.data.listing(cookie, buf_len);
        self.charge_read(listing.len() as u64)?;
        memory::write_bytes(memory, buf, &listing)?;
        // At most `buf_len`, a u32.
        memory::write_u32(memory, bufused, listing.len() as u32)?;
        Ok(())
    }

    /// `fd_read` of a file: from its offset, which moves past what is read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_file<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        file: usize,
        position: u64,
        iovs: u32,
        iovs_len: u32,
        nread: u32,
    ) -> Result<(), Fail> {
        let (list, total) = iovec::read_list(memory, iovs, iovs_len)?;
        memory::check(memory, nread, 4)?;
        let read = self.copy_out(memory, file, position, &list, total)?;
        self.fds.set_position(fd, position + u64::from(read));
        memory::write_u32(memory, nread, read)?;
        Ok(())
    }

    pub(super) fn fd_pread<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        iovs: u32,
        iovs_len: u32,
        offset: u64,
        nread: u32,
    ) -> Result<(), Fail> {
        let (file, _) = self.file_fd(fd)?;
        let (list, total) = iovec::read_list(memory, iovs, iovs_len)?;
        memory::check(memory, nread, 4)?;
        let read = self.copy_out(memory, file, offset, &list, total)?;
        memory::write_u32(memory, nread, read)?;
        Ok(())
    }

    /// Copies file `file` from `offset` into the buffers of `list` (checked,
    /// `total` bytes long) in order, until they are full or the file ends,
    /// having charged for it; returns the count.
    fn copy_out<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        file: usize,
        offset: u64,
        list: &[Iovec],
        total: u32,
    ) -> Result<u32, Fail> {
        let bytes = self.data.bytes(file);
        let start = usize::try_from(offset).map_or(bytes.len(), |o| o.min(bytes.len()));
        let count = (bytes.len() - start).min(total as usize);
        self.charge_read(count as u64)?;
        let mut rest = &self.data.bytes(file)[start..start + count];
        for iovec in list {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at(rest.len().min(iovec.len as usize));
            memory::write_bytes(memory, iovec.buf, now)?;
            rest = later;
        }
        // At most `total`, a u32.
        Ok(count as u32)
    }

    pub(super) fn fd_seek<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        offset: u64,
        whence: u32,
        newoffset: u32,
    ) -> Result<(), Fail> {
        let (file, position) = self.file_fd(fd)?;
        let base = match whence {
            WHENCE_SET => 0,
            WHENCE_CUR => position,
            WHENCE_END => self.data.bytes(file).len() as u64,
            _ => return Err(Errno::Inval.into()),
        };
        // A filedelta is an i64; an offset stays in 0..=i64::MAX.
        let to = i128::from(base) + i128::from(offset as i64);
        let to = u64::try_from(to)
            .ok()
            .filter(|&to| to <= i64::MAX as u64)
            .ok_or(Errno::Inval)?;
        memory::check(memory, newoffset, 8)?;
        self.fds.set_position(fd, to);
        memory::write_u64(memory, newoffset, to)?;
        Ok(())
    }

    pub(super) fn fd_tell<M: Memory + ?Sized>(
        &mut self,
        memory: &mut M,
        fd: u32,
        offset: u32,
    ) -> Result<(), Fail> {
        let (_, position) = self.file_fd(fd)?;
        memory::write_u64(memory, offset, position)?;
        Ok(())
    }

    pub(super) fn fd_advise(&mut self, fd: u32, advice: u32) -> Result<(), Fail> {
        self.file_fd(fd)?;
        if advice > ADVICE_MAX {
            return Err(Errno::Inval.into());
        }
        Ok(())
    }
}

/// `inval` for lookup flags other than `symlink_follow`.
fn lookup_flags(flags: u32) -> Result<(), Errno> {
    if flags & !LOOKUP_FLAGS != 0 {
        return Err(Errno::Inval);
    }
    Ok(())
}

/// The `len` bytes of a path at `addr`: `nametoolong` past [`PATH_MAX`],
/// before anything is read; `fault` outside the memory.
fn read_path<M: Memory + ?Sized>(memory: &M, addr: u32, len: u32) -> Result<Vec<u8>, Errno> {
    if len > PATH_MAX {
        return Err(Errno::Nametoolong);
    }
    memory::check(memory, addr, len.into())?;
    let mut path = vec![0u8; len as usize];
    if len > 0 && !memory.read(addr, &mut path) {
        return Err(Errno::Fault);
    }
    Ok(path)
}
