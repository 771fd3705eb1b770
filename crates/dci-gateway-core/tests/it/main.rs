//! Scenario tests of the gateway core in virtual time: deploy, stop,
//! metering, failover, the epoch, and every attack of a hostile peer, each
//! with a real ledger and no sockets. One binary (one link).
#![allow(dead_code)]

mod attacks;
mod crash;
mod duties;
mod epoch;
mod failover;
mod indexers;
mod sessions;
mod world;
