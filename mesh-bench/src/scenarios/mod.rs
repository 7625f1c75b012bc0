//! The scenarios, one file each (`hostile` and `collection` folders). `fanout`, `records`,
//! `idle`, `race`, `hostile` and two of `collection`'s shapes drive many connections through
//! `runner::Run`; `reconnect` and `collection`'s snapshot shape measure round trips on one
//! event loop.

mod collection;
mod fanout;
mod hostile;
mod idle;
mod openloop;
mod race;
mod reconnect;
mod records;
mod upgrades;

use crate::args::{Options, Scenario};
use crate::report::Report;

/// Runs the scenario the options name; fails when it cannot be set up.
pub fn run(options: &Options) -> Result<Report, String> {
    match options.scenario {
        Scenario::Fanout => fanout::run(options),
        Scenario::Records => records::run(options),
        Scenario::Idle => idle::run(options),
        Scenario::Race => race::run(options),
        Scenario::Reconnect => reconnect::run(options),
        Scenario::Hostile => hostile::run(options),
        Scenario::Collection => collection::run(options),
        Scenario::Upgrades => upgrades::run(options),
    }
}
