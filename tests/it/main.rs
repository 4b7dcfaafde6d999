//! The integration tests: one binary, real sockets on 127.0.0.1, a real server per test.

mod accounts;
mod bad_input;
mod binaries;
mod browser;
mod chat;
mod cli;
mod client;
mod cluster;
mod config_file;
mod faults;
mod hostile;
mod irc;
mod irc_clients;
mod moderation;
mod operations;
mod persistence;
mod rooms;
mod support;
mod tls;
mod tui;
mod viewer;
mod viewer_merge;
mod web;
