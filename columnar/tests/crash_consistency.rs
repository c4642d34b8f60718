//! Crash consistency of column appends: a child process (this test binary re-run) extends a
//! fixed and a variable column in batches, printing each acknowledged batch; the parent
//! SIGKILLs it mid-stream, reopens, and checks that both columns hold whole batches only, every
//! acknowledged batch is present, and SQLite's integrity check passes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use columnar::{ChunkPlan, Columns, DType, Elements, ReadOut};
use kvault::{Location, Store, StoreOptions};

const BATCH: u64 = 500;

fn open(path: &str) -> Store {
    Store::open(Location::File(path.into()), StoreOptions::default()).unwrap()
}

#[test]
fn crash_child() {
    let Ok(path) = std::env::var("COLUMNAR_CRASH_PATH") else {
        return; // Not the child.
    };
    let mut s = open(&path);
    let plan = ChunkPlan::new(256, 4096).unwrap();
    let fixed = Columns::create(&mut s, "f", DType::I64, plan).unwrap();
    let var = Columns::create(&mut s, "v", DType::Bytes, plan).unwrap();
    for batch in 0u64.. {
        let raw: Vec<u8> = (0..BATCH)
            .flat_map(|k| (batch * BATCH + k).to_le_bytes())
            .collect();
        let items: Vec<Vec<u8>> = (0..BATCH)
            .map(|k| vec![(batch % 251) as u8; (k % 37) as usize])
            .collect();
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        Columns::append_many(
            &mut s,
            &[
                (fixed.id, "f", Elements::Fixed(&raw)),
                (var.id, "v", Elements::Var(&refs)),
            ],
        )
        .unwrap();
        println!("{batch}");
    }
}

#[test]
fn killed_appender_leaves_whole_batches() {
    for wait_lines in [1usize, 3, 9, 20] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("COLUMNAR_CRASH_PATH", &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = 0u64;
        while (acked as usize) < wait_lines {
            let line = lines.next().unwrap().unwrap();
            if line.trim().parse::<u64>().is_ok() {
                acked += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut s = open(path.to_str().unwrap());
        let f = Columns::find(&mut s, "f").unwrap().unwrap();
        let v = Columns::find(&mut s, "v").unwrap().unwrap();
        assert_eq!(f.len % BATCH, 0, "torn extend");
        assert_eq!(
            f.len, v.len,
            "columns flushed together must have equal lengths"
        );
        assert!(f.len >= acked * BATCH, "acknowledged batches lost");
        let ReadOut::Fixed(raw) = Columns::read(&mut s, f.id, "f", 0, u64::MAX).unwrap() else {
            panic!()
        };
        for (i, c) in raw.chunks_exact(8).enumerate() {
            assert_eq!(u64::from_le_bytes(c.try_into().unwrap()), i as u64);
        }
        let ReadOut::Var { ends, data } = Columns::read(&mut s, v.id, "v", 0, u64::MAX).unwrap()
        else {
            panic!()
        };
        let mut prev = 0;
        for (i, end) in ends.iter().enumerate() {
            let item = &data[prev as usize..*end as usize];
            let (batch, k) = (i as u64 / BATCH, i as u64 % BATCH);
            assert_eq!(
                item,
                vec![(batch % 251) as u8; (k % 37) as usize].as_slice()
            );
            prev = *end;
        }
        let ok: String = s
            .conn()
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }
}
