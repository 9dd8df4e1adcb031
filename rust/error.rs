//! The one error type of the core. Every variant carries enough context for a
//! single line on stderr, and its variant is its category: the binding maps
//! each category to one Python exception class (`rust/py/errors.rs`). The
//! messages never name a command-line flag; only the CLI speaks of flags.

use std::io;

/// Everything that can go wrong in the core, by category.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// A value given to mig_mon is out of range or malformed.
    #[error("{0}")]
    Config(String),

    /// The machine cannot give what was asked: memory, huge pages, a
    /// mapping, a thread, a file. `errno` is the OS error, if one caused it.
    #[error("{msg}")]
    Resource {
        /// One line: what was being done, and why it failed.
        msg: String,
        /// The OS error number, if any.
        errno: Option<i32>,
    },

    /// A socket call failed: address, bind, connect, send or receive.
    #[error("{msg}")]
    Network {
        /// One line: what was being done, and why it failed.
        msg: String,
        /// The OS error number, if any.
        errno: Option<i32>,
    },

    /// A peer broke the protocol or went away.
    #[error("{0}")]
    Protocol(String),

    /// A page did not hold the value last written to it.
    #[error(
        "detected corrupted memory: page {page} (offset {offset:#x}): expected {expected}, found {found}"
    )]
    Corruption {
        /// Index of the 4 KiB page in the region.
        page: u64,
        /// Byte offset of the checked byte from the start of the region.
        offset: u64,
        /// The value last written there.
        expected: u8,
        /// The value read back.
        found: u8,
    },

    /// A bug of mig_mon's own (a thread panicked): never the user's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    /// A resource failure with no OS error behind it.
    pub fn resource(msg: impl Into<String>) -> Self {
        Error::Resource {
            msg: msg.into(),
            errno: None,
        }
    }

    /// A resource failure caused by an OS error, with what was being done.
    pub fn resource_io(context: impl AsRef<str>, e: io::Error) -> Self {
        Error::Resource {
            msg: format!("{}: {e}", context.as_ref()),
            errno: e.raw_os_error(),
        }
    }

    /// The last OS error (errno) as a resource failure.
    pub fn last_os(context: impl AsRef<str>) -> Self {
        Self::resource_io(context, io::Error::last_os_error())
    }

    /// A socket failure, with what was being done.
    pub fn network(context: impl AsRef<str>, e: io::Error) -> Self {
        Error::Network {
            msg: format!("{}: {e}", context.as_ref()),
            errno: e.raw_os_error(),
        }
    }
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
