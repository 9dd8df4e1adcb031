//! The one error type of the core. Every variant carries enough context for a
//! single line on stderr; the Python binding maps variants to exceptions.

use std::io;

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-supplied value is out of range or malformed.
    #[error("{0}")]
    InvalidArgument(String),

    /// The machine cannot give what was asked (memory, huge pages, ...).
    #[error("{0}")]
    Resource(String),

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

    /// A peer broke the protocol or went away.
    #[error("{0}")]
    Protocol(String),

    /// An operating-system call failed; `context` says which and on what.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an `io::Error` with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The last OS error (errno) with context.
    pub fn last_os(context: impl Into<String>) -> Self {
        Self::io(context, io::Error::last_os_error())
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

/// The core's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
