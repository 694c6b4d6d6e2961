//! Writes the bad-input corpus: `cargo run -p liverseg-tests --bin
//! make_corpus [DIR]` (default: `tests/corpus` of this checkout). Each
//! category folder is emptied of generated files first, so the folder holds
//! exactly what the generator makes; see `tests/corpus/README.md`.

use liverseg_tests::corpus::{Category, generate};
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let inputs = generate();
    let mut total_bytes = 0;
    for category in Category::ALL {
        let dir = root.join(category.dir());
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::remove_file(path)?;
            }
        }
        let mine: Vec<_> = inputs.iter().filter(|i| i.category == category).collect();
        let bytes: usize = mine.iter().map(|i| i.bytes.len()).sum();
        for input in &mine {
            std::fs::write(dir.join(&input.name), &input.bytes)?;
        }
        total_bytes += bytes;
        println!(
            "{:<10} {:>4} inputs {:>9} bytes  {}",
            category.dir(),
            mine.len(),
            bytes,
            dir.display()
        );
    }
    println!(
        "{:<10} {:>4} inputs {:>9} bytes",
        "total",
        inputs.len(),
        total_bytes
    );
    Ok(())
}
