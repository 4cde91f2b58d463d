//! Demo and data tools: the embedded demo launcher (`tessera-demo`) and the data generator
//! (`tessera-datagen`).
//!
//! Layout:
//! - [`synth`]: a seeded synthetic federation of four banks (card, auto, savings, home).
//! - [`uci`]: splits the raw UCI "default of credit card clients" file across four banks.
#![warn(missing_docs, unreachable_pub)]

pub mod synth;
pub mod uci;
