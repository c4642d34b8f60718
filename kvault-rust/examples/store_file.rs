//! Streams a file into a vault and back out with `std::io` traits, then range-reads it.
//!
//! `cargo run -p kvault --example store_file -- path/to/file [vault.db]`

use std::io::{Read, Seek, SeekFrom, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let source = args.next().ok_or("usage: store_file FILE [VAULT]")?;
    let vault_path = args.next().unwrap_or_else(|| ":memory:".to_string());
    let vault = kvault::Kv::open(&vault_path)?;

    // In: any `Read` copies into a `ValueWriter` in constant memory.
    let mut writer = vault.open_writer(source.as_bytes());
    let copied = std::io::copy(&mut std::fs::File::open(&source)?, &mut writer)?;
    writer.flush()?;
    let stored = writer.commit()?;
    assert_eq!(copied, stored);

    // Out: a `ValueReader` is `Read + Seek`.
    let mut reader = vault
        .open_reader(source.as_bytes())?
        .ok_or("value vanished")?;
    let middle = reader.len() / 2;
    reader.seek(SeekFrom::Start(middle))?;
    let mut window = vec![0u8; 16.min(usize::try_from(reader.len() - middle)?)];
    reader.read_exact(&mut window)?;
    println!("stored {stored} bytes of {source}; 16 bytes at offset {middle}: {window:02x?}");
    println!("done");
    Ok(())
}
