//! One module per area of the portal.

pub mod account;
pub mod admin;
pub mod auth;
pub mod billing;
pub mod console;
pub mod docs;
pub mod explorer;
pub mod home;
pub mod keys;
pub mod usage;
