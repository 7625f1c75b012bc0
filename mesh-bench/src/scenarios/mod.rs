//! The scenarios, one file each (`hostile` a folder). `fanout`, `records`, `idle`, `race` and
//! `hostile` drive many connections through `runner::Run`; `reconnect` measures two ways of
//! catching up on one event loop.

mod fanout;
mod hostile;
mod idle;
mod openloop;
mod race;
mod reconnect;
mod records;

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
    }
}
