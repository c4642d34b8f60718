//! Column metadata: create, find, rename, list and delete; bad elements that must write
//! nothing; appends spanning columns in one transaction.

mod common;

use columnar::{ChunkPlan, Column, DType, Elements, Error};
use common::{chunk_sizes, i64s, store};

#[test]
fn metadata_operations() {
    let mut s = store();
    let plan = ChunkPlan::new(128 << 10, 16 << 20).unwrap();
    let a = Column::create(&mut s, "a", DType::F64, plan).unwrap();
    assert!(matches!(
        Column::create(&mut s, "a", DType::I64, plan),
        Err(Error::ColumnExists(_))
    ));
    Column::create(&mut s, "b", DType::Str, plan).unwrap();
    Column::rename(&mut s, "a", "c").unwrap();
    assert_eq!(Column::find(&mut s, "c").unwrap().unwrap().id, a.id);
    assert!(Column::find(&mut s, "a").unwrap().is_none());
    assert!(matches!(
        Column::rename(&mut s, "c", "b"),
        Err(Error::ColumnExists(_))
    ));
    assert!(matches!(
        Column::rename(&mut s, "zz", "y"),
        Err(Error::ColumnNotFound(_))
    ));
    let names: Vec<String> = Column::list(&mut s)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, vec!["b", "c"]);
    // The renamed column's handle: same id, the new name for messages.
    let c = Column::find(&mut s, "c").unwrap().unwrap();
    c.append(&mut s, Elements::Fixed(&1.5f64.to_le_bytes()))
        .unwrap();
    assert!(Column::delete(&mut s, "c").unwrap());
    assert!(!Column::delete(&mut s, "c").unwrap());
    assert!(chunk_sizes(&mut s).is_empty());
    assert!(matches!(c.meta(&mut s), Err(Error::ColumnNotFound(_))));
    assert!(matches!(
        c.append(&mut s, Elements::Fixed(&[0; 8])),
        Err(Error::ColumnNotFound(_))
    ));
}

#[test]
fn bad_elements_write_nothing() {
    let mut s = store();
    let col = Column::create(&mut s, "x", DType::I32, ChunkPlan::new(64, 64).unwrap()).unwrap();
    col.append(&mut s, Elements::Fixed(&[1, 0, 0, 0])).unwrap();
    assert!(matches!(
        col.append(&mut s, Elements::Fixed(&[1, 2, 3])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        col.append(&mut s, Elements::Var(&[b"a"])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        col.set(&mut s, 1, Elements::Fixed(&[0; 4])),
        Err(Error::IndexOutOfRange { index: 1, len: 1 })
    ));
    assert_eq!(col.meta(&mut s).unwrap().len, 1);
}

#[test]
fn append_many_spans_columns_in_one_transaction() {
    let mut s = store();
    let plan = ChunkPlan::new(64, 64).unwrap();
    let t = Column::create(&mut s, "t", DType::I64, plan).unwrap();
    let v = Column::create(&mut s, "v", DType::Bytes, plan).unwrap();
    let lens = Column::append_many(
        &mut s,
        &[
            (&t, Elements::Fixed(&i64s(&[1, 2]))),
            (&v, Elements::Var(&[b"a", b"b"])),
        ],
    )
    .unwrap();
    assert_eq!(lens, vec![2, 2]);
    // The second batch is malformed: the first column's part must not land either.
    let err = Column::append_many(
        &mut s,
        &[
            (&t, Elements::Fixed(&i64s(&[3]))),
            (&v, Elements::Fixed(&[1])),
        ],
    );
    assert!(err.is_err());
    assert_eq!(t.meta(&mut s).unwrap().len, 2);
}

#[test]
fn fixed_text_column_keeps_its_dtype_and_padded_elements() {
    let mut s = store();
    let plan = ChunkPlan::new(64, 64).unwrap();
    let dtype = DType::parse("str:8:utf8").unwrap();
    let DType::FixedStr(fixed) = dtype else {
        panic!("str:8 is fixed-width text")
    };
    let col = Column::create(&mut s, "names", dtype, plan).unwrap();
    let mut raw = Vec::new();
    for text in ["ab", "", "exactly8"] {
        fixed.pad_into(text.as_bytes(), &mut raw).unwrap();
    }
    assert!(fixed.pad_into(b"nine byte", &mut raw).is_err());
    col.append(&mut s, Elements::Fixed(&raw)).unwrap();
    // A wrong width is refused like any fixed-width element.
    assert!(matches!(
        col.append(&mut s, Elements::Fixed(b"short")),
        Err(Error::InvalidArgument(_))
    ));
    let found = Column::find(&mut s, "names").unwrap().unwrap();
    assert_eq!(found.dtype, dtype);
    assert_eq!(found.dtype.name(), "str:8");
    let columnar::ReadOut::Fixed(read) = found.read(&mut s, 0, 3).unwrap() else {
        panic!("fixed-width read")
    };
    let texts: Vec<&[u8]> = read.chunks_exact(8).map(|e| fixed.unpad(e)).collect();
    assert_eq!(texts, [&b"ab"[..], b"", b"exactly8"]);
}
