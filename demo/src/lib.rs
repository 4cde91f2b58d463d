//! Demo and data tools: the embedded demo launcher (`tessera-demo`) and the data generator
//! (`tessera-datagen`).
//!
//! Layout:
//! - [`uci`]: splits the raw UCI "default of credit card clients" file across four banks.
#![warn(missing_docs, unreachable_pub)]

pub mod uci;
