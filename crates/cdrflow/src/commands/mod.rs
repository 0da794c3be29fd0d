//! One module per subcommand: argument parsing next to what the command does.

pub mod alerts;
pub mod bill;
pub mod catalogue;
pub mod cdc;
pub mod daily;
pub mod export;
pub mod generate;
pub mod process;
pub mod reference;
pub mod rejected;
pub mod replay;
pub mod report;
pub mod rerate;
pub mod retention;
pub mod run;
pub mod usage;
