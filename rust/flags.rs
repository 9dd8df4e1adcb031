//! How the command line spells each configuration field: one table per
//! configuration, declared beside it ([`Flags`]). The CLI builds its options
//! from the table, takes each default from the configuration's `Default`
//! and leaves every range and cross-field rule to its `validate`; a field's
//! error names the field, which the table turns into the flag. So a field
//! is declared once, with its flag next to it, and nothing is said again.

use serde::Serialize;

/// What a flag takes on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Takes {
    /// Text handed to the field as written (sizes with units, names,
    /// addresses): the field reads it.
    Text,
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// Nothing: given, it sets the field to true.
    Switch,
    /// Nothing: given, it sets the field to false (`--no-verify`).
    Negated,
}

/// One field's flag.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Flag {
    /// The configuration field it sets.
    pub field: &'static str,
    /// Its names, `-m/--memory`; a positional argument's is its metavar
    /// (`SERVER_IP`).
    pub names: &'static str,
    /// What the help shows for its value (`SIZE`); empty for a switch.
    pub metavar: &'static str,
    /// What it takes.
    pub takes: Takes,
    /// One line of help.
    pub help: &'static str,
    /// What the help shows as the default when the value alone says too
    /// little (`unlimited` for None); empty: the default value itself.
    pub shown_default: &'static str,
    /// The names the field accepts (a text enum's), for the help.
    pub choices: &'static [&'static str],
}

impl Flag {
    /// A flag with a value.
    pub const fn new(
        field: &'static str,
        names: &'static str,
        metavar: &'static str,
        takes: Takes,
        help: &'static str,
    ) -> Self {
        Self {
            field,
            names,
            metavar,
            takes,
            help,
            shown_default: "",
            choices: &[],
        }
    }

    /// A switch (`Takes::Switch` or `Takes::Negated`).
    pub const fn switch(
        field: &'static str,
        names: &'static str,
        takes: Takes,
        help: &'static str,
    ) -> Self {
        Self::new(field, names, "", takes, help)
    }

    /// The same, with the default shown as `text` in the help.
    pub const fn shown(mut self, text: &'static str) -> Self {
        self.shown_default = text;
        self
    }

    /// The same, taking one of `names`.
    pub const fn choices(mut self, names: &'static [&'static str]) -> Self {
        self.choices = names;
        self
    }
}

/// A configuration's command-line flags.
pub trait Flags {
    /// One entry per field the command line sets, in the help's order.
    const FLAGS: &'static [Flag];
}

/// `--duration`, which every tool has.
pub const DURATION: Flag = Flag::new(
    "duration_s",
    "--duration",
    "S",
    Takes::Float,
    "Stop after this many seconds.",
)
.shown("until stopped");

/// `--interval`, seconds between reports.
pub const INTERVAL: Flag = Flag::new(
    "interval_s",
    "--interval",
    "S",
    Takes::Float,
    "Seconds between reports.",
);

/// `-p/--port` of the UDP tools.
pub const UDP_PORT: Flag = Flag::new("port", "-p/--port", "PORT", Takes::Int, "UDP port.");

/// `--bind` of the servers.
pub const BIND: Flag = Flag::new(
    "bind",
    "--bind",
    "ADDR",
    Takes::Text,
    "Address to listen on.",
)
.shown("all, IPv6 and IPv4");
