//! Build script: the migrations are embedded in the binary (and in every
//! `#[sqlx::test]`) at compile time, so a change to them must rebuild.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
