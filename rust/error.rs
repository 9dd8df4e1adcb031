//! The one error type of the core. Every variant carries enough context for a
//! single line on stderr, and its variant is its category: the binding maps
//! each category to one Python exception class (`rust/py/errors.rs`). The
//! messages never name a command-line flag; only the CLI speaks of flags.

use std::io;

/// Everything that can go wrong in the core, by category.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// A value given to mig_mon is out of range or malformed; `field`
    /// names the configuration field (the CLI says which flag that is).
    #[error("{}{msg}", field_prefix(.field))]
    Config {
        /// The field the value was given for, if one field is at fault.
        field: Option<String>,
        /// One line: what is wrong (without the field's name).
        msg: String,
    },

    /// The machine cannot give what was asked: memory, huge pages, a
    /// mapping, a thread, a file. `errno` is the OS error, if one caused it.
    #[error("{msg}{}", skip_suffix(.skip))]
    Resource {
        /// One line: what was being done, and why it failed.
        msg: String,
        /// The OS error number, if any.
        errno: Option<i32>,
        /// The configuration field whose setting skips this check, if one
        /// does (the CLI says which flag that is).
        skip: Option<String>,
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

fn field_prefix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

fn skip_suffix(skip: &Option<String>) -> String {
    skip.as_ref()
        .map(|f| format!(" ({f} skips this check)"))
        .unwrap_or_default()
}

impl Error {
    /// A configuration error not tied to one field.
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config {
            field: None,
            msg: msg.into(),
        }
    }

    /// A configuration error in `field`.
    pub fn field(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config {
            field: Some(field.into()),
            msg: msg.into(),
        }
    }

    /// The same error, said of `field` when it names none yet (a value
    /// checked by a helper that does not know whose it is).
    pub fn of_field(self, field: &str) -> Self {
        match self {
            Error::Config { field: None, msg } => Error::field(field, msg),
            other => other,
        }
    }

    /// A resource failure with no OS error behind it.
    pub fn resource(msg: impl Into<String>) -> Self {
        Error::Resource {
            msg: msg.into(),
            errno: None,
            skip: None,
        }
    }

    /// A check of the machine's resources that setting `field` skips.
    pub fn resource_check(msg: impl Into<String>, field: &str) -> Self {
        Error::Resource {
            msg: msg.into(),
            errno: None,
            skip: Some(field.into()),
        }
    }

    /// A resource failure caused by an OS error, with what was being done.
    pub fn resource_io(context: impl AsRef<str>, e: io::Error) -> Self {
        Error::Resource {
            msg: format!("{}: {e}", context.as_ref()),
            errno: e.raw_os_error(),
            skip: None,
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
