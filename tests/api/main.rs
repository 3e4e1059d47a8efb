//! Black-box tests: the real server on port 0, local servers as HTTP targets, no internet.
//! Time is asserted through what the service records (timestamps, completion order), with
//! generous margins.

mod helpers;

mod checks;
mod cli;
mod cluster;
mod docs;
mod errors;
mod events;
mod file_jobs;
mod flows;
mod gather;
mod http_jobs;
mod lifecycle;
mod limits;
mod load;
mod newcomer;
mod operations;
mod picture;
mod scenarios;
mod ssrf;
mod storage;
mod tls;
mod validation;
mod verdict;
mod wait;
mod wire;
