//! The WASI preview 1 error numbers: the `errno` type of
//! `wasi_snapshot_preview1.witx`, every value, in one enum. A function
//! returns one of them to the kernel as its i32 result; this crate uses
//! `success`, `badf`, `fault`, `inval`, `isdir`, `mfile`, `nametoolong`,
//! `noent`, `notdir`, `perm` and `spipe` today, and the rest are here so
//! that new functions take their numbers from the one table instead of
//! from memory.

use std::fmt;

macro_rules! errnos {
    ($($variant:ident = $code:literal => $name:literal,)*) => {
        /// A WASI errno, as a function returns it to the kernel. The
        /// variants are witx's names in CamelCase (`2big` is `TooBig`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Errno {
            $(#[doc = concat!("`", $name, "` (", $code, ")")] $variant = $code,)*
        }

        impl Errno {
            /// Every errno, by number.
            pub const ALL: &[Errno] = &[$(Errno::$variant,)*];

            /// Its name in witx (`badf`, `fault`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Errno::$variant => $name,)*
                }
            }
        }
    };
}

errnos! {
    Success = 0 => "success",
    TooBig = 1 => "2big",
    Acces = 2 => "acces",
    Addrinuse = 3 => "addrinuse",
    Addrnotavail = 4 => "addrnotavail",
    Afnosupport = 5 => "afnosupport",
    Again = 6 => "again",
    Already = 7 => "already",
    Badf = 8 => "badf",
    Badmsg = 9 => "badmsg",
    Busy = 10 => "busy",
    Canceled = 11 => "canceled",
    Child = 12 => "child",
    Connaborted = 13 => "connaborted",
    Connrefused = 14 => "connrefused",
    Connreset = 15 => "connreset",
    Deadlk = 16 => "deadlk",
    Destaddrreq = 17 => "destaddrreq",
    Dom = 18 => "dom",
    Dquot = 19 => "dquot",
    Exist = 20 => "exist",
    Fault = 21 => "fault",
    Fbig = 22 => "fbig",
    Hostunreach = 23 => "hostunreach",
    Idrm = 24 => "idrm",
    Ilseq = 25 => "ilseq",
    Inprogress = 26 => "inprogress",
    Intr = 27 => "intr",
    Inval = 28 => "inval",
    Io = 29 => "io",
    Isconn = 30 => "isconn",
    Isdir = 31 => "isdir",
    Loop = 32 => "loop",
    Mfile = 33 => "mfile",
    Mlink = 34 => "mlink",
    Msgsize = 35 => "msgsize",
    Multihop = 36 => "multihop",
    Nametoolong = 37 => "nametoolong",
    Netdown = 38 => "netdown",
    Netreset = 39 => "netreset",
    Netunreach = 40 => "netunreach",
    Nfile = 41 => "nfile",
    Nobufs = 42 => "nobufs",
    Nodev = 43 => "nodev",
    Noent = 44 => "noent",
    Noexec = 45 => "noexec",
    Nolck = 46 => "nolck",
    Nolink = 47 => "nolink",
    Nomem = 48 => "nomem",
    Nomsg = 49 => "nomsg",
    Noprotoopt = 50 => "noprotoopt",
    Nospc = 51 => "nospc",
    Nosys = 52 => "nosys",
    Notconn = 53 => "notconn",
    Notdir = 54 => "notdir",
    Notempty = 55 => "notempty",
    Notrecoverable = 56 => "notrecoverable",
    Notsock = 57 => "notsock",
    Notsup = 58 => "notsup",
    Notty = 59 => "notty",
    Nxio = 60 => "nxio",
    Overflow = 61 => "overflow",
    Ownerdead = 62 => "ownerdead",
    Perm = 63 => "perm",
    Pipe = 64 => "pipe",
    Proto = 65 => "proto",
    Protonosupport = 66 => "protonosupport",
    Prototype = 67 => "prototype",
    Range = 68 => "range",
    Rofs = 69 => "rofs",
    Spipe = 70 => "spipe",
    Srch = 71 => "srch",
    Stale = 72 => "stale",
    Timedout = 73 => "timedout",
    Txtbsy = 74 => "txtbsy",
    Xdev = 75 => "xdev",
    Notcapable = 76 => "notcapable",
}

impl Errno {
    /// Its number, the kernel's i32 result (as its u32 bits).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The errno numbered `code`.
    pub fn from_code(code: u32) -> Option<Errno> {
        Errno::ALL.get(usize::try_from(code).ok()?).copied()
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WASI errno {} ({})", self.name(), self.code())
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_are_numbered_like_witx() {
        // Spot checks against the witx file, and the table has no gaps.
        for (errno, number) in [
            (Errno::Success, 0),
            (Errno::TooBig, 1),
            (Errno::Badf, 8),
            (Errno::Fault, 21),
            (Errno::Inval, 28),
            (Errno::Noent, 44),
            (Errno::Nosys, 52),
            (Errno::Spipe, 70),
            (Errno::Notcapable, 76),
        ] {
            assert_eq!(errno.code(), number, "{errno:?}");
        }
        assert_eq!(Errno::ALL.len(), 77);
        for (i, errno) in Errno::ALL.iter().enumerate() {
            assert_eq!(errno.code() as usize, i, "{errno:?}");
            assert_eq!(Errno::from_code(errno.code()), Some(*errno));
        }
        assert_eq!(Errno::from_code(77), None);
        assert_eq!(Errno::Badf.to_string(), "WASI errno badf (8)");
    }
}
