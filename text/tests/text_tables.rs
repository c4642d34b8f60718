//! Text tables against their contract: FTS5 in the bundled SQLite, writes kept in step with
//! the index, BM25 ranking, the three tokenizers, quoting of plain-word queries (fuzzed),
//! malformed raw queries, column restriction, metadata filters, paging, snippets and
//! highlights, exact-text lookups, transactions, another connection's writes and `check()`.

use std::sync::Arc;

use kvault::{Encoding, Error, Filter, FilterValue, Store, Vault};
use proptest::prelude::*;
use text::{
    DocUpdate, Markers, NewDoc, QueryMode, SearchOptions, Snippet, TextKind, TextOutput, TextTable,
    Tokenizer,
};

fn doc<'a>(texts: &'a [&'a str], value: &'a [u8]) -> NewDoc<'a> {
    NewDoc {
        texts,
        value,
        encoding: Encoding::RAW,
        metadata: None,
    }
}

fn open(vault: &Vault, name: &str, columns: &[&str], tokenizer: Tokenizer) -> TextTable {
    let columns = columns.iter().map(|c| (*c).to_string()).collect();
    vault
        .with(|s| TextTable::open(s, name, Some((columns, tokenizer))))
        .unwrap()
}

fn ids(vault: &Vault, table: &TextTable, query: &str, options: &SearchOptions<'_>) -> Vec<i64> {
    vault
        .with(|s| table.search(s, query, options))
        .unwrap()
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn all() -> SearchOptions<'static> {
    SearchOptions {
        k: 1000,
        ..Default::default()
    }
}

fn mode(mode: QueryMode) -> SearchOptions<'static> {
    SearchOptions { mode, ..all() }
}

#[test]
fn fts5_is_compiled_into_the_bundled_sqlite() {
    let vault = Vault::open_in_memory().unwrap();
    let options: Vec<String> = vault
        .with(|s: &mut Store| {
            let conn = s.conn()?;
            let mut stmt = conn.prepare("PRAGMA compile_options")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok::<_, Error>(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .unwrap();
    assert!(options.iter().any(|o| o == "ENABLE_FTS5"), "{options:?}");
}

#[test]
fn bm25_ranks_denser_matches_first_and_scores_are_positive() {
    let vault = Vault::open_in_memory().unwrap();
    let t = open(&vault, "docs", &["content"], Tokenizer::Unicode61);
    let got = vault
        .with(|s| {
            t.insert_many(
                s,
                &[
                    doc(&["python programming"], b"1"),
                    doc(&["python python python programming"], b"2"),
                    doc(&["javascript programming"], b"3"),
                ],
            )
        })
        .unwrap();
    assert_eq!(got, vec![1, 2, 3]);
    let hits = vault.with(|s| t.search(s, "python", &all())).unwrap();
    assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![2, 1]);
    assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);
    assert_eq!(hits[0].value, b"2");
    assert_eq!(vault.with(|s| t.count(s)).unwrap(), 3);
}

#[test]
fn tokenizers_fold_diacritics_stem_and_match_substrings() {
    let vault = Vault::open_in_memory().unwrap();
    let plain = open(&vault, "plain", &["c"], Tokenizer::Unicode61);
    let porter = open(&vault, "porter", &["c"], Tokenizer::Porter);
    let tri = open(&vault, "tri", &["c"], Tokenizer::Trigram);
    let texts = [
        "Crème brûlée at the café",
        "the cats were running home",
        "a yellow submarine",
    ];
    let docs: Vec<[&str; 1]> = texts.iter().map(|x| [*x]).collect();
    let docs: Vec<NewDoc<'_>> = docs.iter().map(|d| doc(d, b"")).collect();
    for t in [&plain, &porter, &tri] {
        vault.with(|s| t.insert_many(s, &docs)).unwrap();
    }
    // Diacritics fold both ways, in every tokenizer.
    assert_eq!(ids(&vault, &plain, "creme brulee", &all()), vec![1]);
    assert_eq!(ids(&vault, &plain, "CAFÉ", &all()), vec![1]);
    assert_eq!(ids(&vault, &tri, "brulee", &all()), vec![1]);
    // Stemming only with porter.
    assert_eq!(ids(&vault, &porter, "cat runs", &all()), vec![2]);
    assert!(ids(&vault, &plain, "cat runs", &all()).is_empty());
    // Substrings only with trigrams.
    assert_eq!(ids(&vault, &tri, "marin", &all()), vec![3]);
    assert!(ids(&vault, &plain, "marin", &all()).is_empty());
    // A typo: no document holds it, but the trigram "any" mode ranks the one sharing most.
    assert!(ids(&vault, &tri, "submarnie", &all()).is_empty());
    assert_eq!(
        ids(&vault, &tri, "submarnie", &mode(QueryMode::Any))[0],
        3,
        "typo-tolerant ranking"
    );
}

#[test]
fn query_modes_differ_as_documented() {
    let vault = Vault::open_in_memory().unwrap();
    let t = open(&vault, "m", &["c"], Tokenizer::Unicode61);
    let docs = [["the quick brown fox"], ["quick fox"], ["brown dog"]];
    let docs: Vec<NewDoc<'_>> = docs.iter().map(|d| doc(d, b"")).collect();
    vault.with(|s| t.insert_many(s, &docs)).unwrap();
    let mut any = ids(&vault, &t, "quick brown", &mode(QueryMode::Any));
    any.sort_unstable();
    assert_eq!(any, vec![1, 2, 3]);
    assert_eq!(ids(&vault, &t, "fox quick", &all()).len(), 2);
    assert!(ids(&vault, &t, "fox quick", &mode(QueryMode::Phrase)).is_empty());
    assert_eq!(
        ids(&vault, &t, "quick fox", &mode(QueryMode::Phrase)),
        vec![2]
    );
    assert_eq!(
        ids(&vault, &t, "quick NOT brown", &mode(QueryMode::Raw)),
        vec![2]
    );
    assert_eq!(ids(&vault, &t, "bro*", &mode(QueryMode::Raw)).len(), 2);
    // As plain words, operators are only words: "NOT" is in no document.
    assert!(ids(&vault, &t, "quick NOT brown", &all()).is_empty());
}

#[test]
fn malformed_raw_queries_are_invalid_arguments() {
    let vault = Vault::open_in_memory().unwrap();
    let t = open(&vault, "bad", &["title", "body"], Tokenizer::Unicode61);
    vault
        .with(|s| t.insert_many(s, &[doc(&["a", "b"], b"")]))
        .unwrap();
    for query in [
        "(",
        "\"unterminated",
        "AND",
        "nosuchcolumn: x",
        "a NEAR(",
        "*",
        "^",
    ] {
        let err = vault
            .with(|s| t.search(s, query, &mode(QueryMode::Raw)))
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("malformed full-text query")),
            "{query:?}: {err:?}"
        );
        let err = vault
            .with(|s| t.count_matches(s, query, QueryMode::Raw, None, None))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{query:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// No input is FTS5 syntax in the plain-word modes: operators, quotes, column filters,
    /// parentheses, NEAR, prefixes and control characters never make a search fail.
    #[test]
    fn plain_word_queries_never_fail(
        words in proptest::collection::vec(
            prop_oneof![
                Just("\"".to_string()), Just("AND".to_string()), Just("OR".to_string()),
                Just("NOT".to_string()), Just("NEAR(".to_string()), Just(")".to_string()),
                Just("*".to_string()), Just("^".to_string()), Just("title:".to_string()),
                Just("{title body}:".to_string()), Just("\0".to_string()), Just("+".to_string()),
                Just("-".to_string()), Just("alpha".to_string()), "\\PC{0,6}",
            ],
            0..12,
        ),
        glue in prop_oneof![Just(""), Just(" ")],
    ) {
        let vault = Vault::open_in_memory().unwrap();
        let t = open(&vault, "fuzz", &["title", "body"], Tokenizer::Trigram);
        let p = open(&vault, "fuzz_p", &["title", "body"], Tokenizer::Porter);
        vault.with(|s| t.insert_many(s, &[doc(&["alpha \"q\" AND", "x y"], b"")])).unwrap();
        vault.with(|s| p.insert_many(s, &[doc(&["alpha \"q\" AND", "x y"], b"")])).unwrap();
        let query = words.join(glue);
        for table in [&t, &p] {
            for m in [QueryMode::All, QueryMode::Any, QueryMode::Phrase] {
                for column in [None, Some("body")] {
                    let options = SearchOptions { column, ..mode(m) };
                    prop_assert!(vault.with(|s| table.search(s, &query, &options)).is_ok());
                    prop_assert!(vault
                        .with(|s| table.count_matches(s, &query, m, column, None))
                        .is_ok());
                }
            }
        }
    }
}

#[test]
fn columns_restrict_matches_and_unknown_columns_are_refused() {
    let vault = Vault::open_in_memory().unwrap();
    let t = open(&vault, "cols", &["title", "body"], Tokenizer::Unicode61);
    vault
        .with(|s| {
            t.insert_many(
                s,
                &[
                    doc(&["Python Guide", "Learn programming"], b"1"),
                    doc(&["Java Guide", "Python comparison"], b"2"),
                ],
            )
        })
        .unwrap();
    let body = SearchOptions {
        column: Some("body"),
        ..all()
    };
    assert_eq!(ids(&vault, &t, "python", &body), vec![2]);
    assert_eq!(
        ids(&vault, &t, "title:python", &mode(QueryMode::Raw)),
        vec![1]
    );
    let bad = SearchOptions {
        column: Some("nope"),
        ..all()
    };
    assert!(matches!(
        vault.with(|s| t.search(s, "python", &bad)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        vault
            .with(|s| t.count_matches(s, "guide", QueryMode::All, Some("title"), None))
            .unwrap(),
        2
    );
}

#[test]
fn filters_offset_snippets_and_highlights() {
    let vault = Vault::open_in_memory().unwrap();
    let t = open(&vault, "page", &["content"], Tokenizer::Unicode61);
    let texts: Vec<[String; 1]> = (0..30)
        .map(|i| {
            [format!(
                "{} apple {}",
                "word ".repeat(i % 7),
                "pie ".repeat(i % 4)
            )]
        })
        .collect();
    let metadata: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "{{\"lang\": \"{}\", \"n\": {i}}}",
                if i % 3 == 0 { "en" } else { "de" }
            )
        })
        .collect();
    let refs: Vec<[&str; 1]> = texts.iter().map(|[t]| [t.as_str()]).collect();
    let docs: Vec<NewDoc<'_>> = refs
        .iter()
        .zip(&metadata)
        .map(|(texts, m)| NewDoc {
            metadata: Some(m),
            ..doc(texts, b"")
        })
        .collect();
    vault.with(|s| t.insert_many(s, &docs)).unwrap();
    // Paging: pages of 7 concatenate to the full ranking.
    let full = ids(&vault, &t, "apple", &all());
    assert_eq!(full.len(), 30);
    let mut paged = Vec::new();
    for page in 0..5 {
        let options = SearchOptions {
            k: 7,
            offset: page * 7,
            ..all()
        };
        paged.extend(ids(&vault, &t, "apple", &options));
    }
    assert_eq!(paged, full);
    // Filters: equality and `in`, combined with the ranking.
    let en = Filter::new(vec![("lang".into(), vec![FilterValue::Text("en".into())])]).unwrap();
    let options = SearchOptions {
        filter: Some(&en),
        ..all()
    };
    let found = ids(&vault, &t, "apple", &options);
    let expected: Vec<i64> = full
        .iter()
        .copied()
        .filter(|id| (id - 1) % 3 == 0)
        .collect();
    assert_eq!(found, expected);
    let some = Filter::new(vec![(
        "n".into(),
        vec![
            FilterValue::Int(4),
            FilterValue::Int(5),
            FilterValue::Int(99),
        ],
    )])
    .unwrap();
    let mut found = ids(
        &vault,
        &t,
        "apple",
        &SearchOptions {
            filter: Some(&some),
            ..all()
        },
    );
    found.sort_unstable();
    assert_eq!(found, vec![5, 6]);
    assert_eq!(
        vault
            .with(|s| t.count_matches(s, "apple", QueryMode::All, None, Some(&en)))
            .unwrap(),
        10
    );
    // Snippets and highlights with markers that SQL would need quoted.
    let markers = Markers {
        start: "<'b'>",
        end: "</'b'>",
    };
    let options = SearchOptions {
        k: 1,
        texts: TextOutput::Highlighted(markers),
        snippet: Some(Snippet {
            column: None,
            markers,
            ellipsis: "…",
            tokens: 3,
        }),
        filter: Some(&some),
        ..all()
    };
    let hits = vault.with(|s| t.search(s, "apple", &options)).unwrap();
    let hit = &hits[0];
    assert!(hit.texts[0].contains("<'b'>apple</'b'>"), "{:?}", hit.texts);
    let snippet = hit.snippet.as_deref().unwrap();
    assert!(
        snippet.contains("<'b'>apple</'b'>") && snippet.contains('…'),
        "{snippet}"
    );
    let too_long = SearchOptions {
        snippet: Some(Snippet {
            tokens: 65,
            ..options.snippet.unwrap()
        }),
        ..options
    };
    assert!(vault.with(|s| t.search(s, "apple", &too_long)).is_err());
}

#[test]
fn updates_deletes_and_exact_text_lookups_keep_the_index_in_step() {
    let vault = Vault::open_in_memory().unwrap();
    vault.attach(Arc::new(TextKind));
    let t = open(&vault, "crud", &["title", "body"], Tokenizer::Porter);
    let ids_ = vault
        .with(|s| {
            t.insert_many(
                s,
                &[
                    doc(&["ab", "c"], b"1"),
                    doc(&["a", "bc"], b"2"),
                    doc(&["ab", "c"], b"3"),
                ],
            )
        })
        .unwrap();
    // Exact lookup: the first document with exactly these texts.
    let got = vault
        .with(|s| t.get_by_text(s, &["ab", "c"]))
        .unwrap()
        .unwrap();
    assert_eq!((got.id, got.value.as_slice()), (ids_[0], &b"1"[..]));
    assert!(vault
        .with(|s| t.get_by_text(s, &["ab", "C"]))
        .unwrap()
        .is_none());
    assert!(vault.with(|s| t.get_by_text(s, &["ab"])).is_err());
    // put replaces the value of that document, or inserts.
    let kept = vault
        .with(|s| t.put(s, &doc(&["a", "bc"], b"new")))
        .unwrap();
    assert_eq!(kept, ids_[1]);
    let added = vault
        .with(|s| t.put(s, &doc(&["zzz", "yyy"], b"z")))
        .unwrap();
    assert_eq!(vault.with(|s| t.count(s)).unwrap(), 4);
    // New texts leave the index at once.
    let update = DocUpdate {
        texts: Some(&["running shoes", "fresh"]),
        ..Default::default()
    };
    assert!(vault.with(|s| t.update(s, ids_[0], update)).unwrap());
    assert_eq!(ids(&vault, &t, "run", &all()), vec![ids_[0]]);
    assert_eq!(ids(&vault, &t, "ab", &all()), vec![ids_[2]]);
    assert!(!vault.with(|s| t.update(s, 999, update)).unwrap());
    let value_only = DocUpdate {
        value: Some((b"v", Encoding(7))),
        metadata: Some(Some("{\"k\": 1}")),
        ..Default::default()
    };
    assert!(vault.with(|s| t.update(s, added, value_only)).unwrap());
    let got = vault.with(|s| t.get(s, added)).unwrap().unwrap();
    assert_eq!(
        (got.encoding, got.metadata.as_deref()),
        (Encoding(7), Some("{\"k\":1}"))
    );
    assert_eq!(got.texts, vec!["zzz", "yyy"]);
    // Deletes.
    assert_eq!(vault.with(|s| t.delete(s, &[ids_[0], 999])).unwrap(), 1);
    assert!(ids(&vault, &t, "run", &all()).is_empty());
    assert_eq!(vault.with(|s| t.count(s)).unwrap(), 3);
    assert_eq!(
        vault.with(|s| t.ids(s, 2, 1)).unwrap(),
        vec![ids_[2], added]
    );
    assert_eq!(
        vault.with(|s| t.ids_after(s, ids_[2], 10)).unwrap(),
        vec![added]
    );
    assert_eq!(vault.check().unwrap(), Vec::<String>::new());
    assert_eq!(vault.with(|s| t.clear(s)).unwrap(), 3);
    assert!(ids(&vault, &t, "zzz", &all()).is_empty());
    assert_eq!(vault.check().unwrap(), Vec::<String>::new());
}

#[test]
fn bad_input_changes_nothing() {
    let vault = Vault::open_in_memory().unwrap();
    let t = open(&vault, "strict", &["title", "body"], Tokenizer::Unicode61);
    vault
        .with(|s| t.insert_many(s, &[doc(&["keep", "me"], b"")]))
        .unwrap();
    let wrong_width =
        vault.with(|s| t.insert_many(s, &[doc(&["ok", "ok"], b""), doc(&["one"], b"")]));
    assert!(matches!(wrong_width, Err(Error::InvalidArgument(m)) if m.contains("document 1")));
    let bad_json = NewDoc {
        metadata: Some("{not json"),
        ..doc(&["ok", "ok"], b"")
    };
    let err = vault
        .with(|s| t.insert_many(s, &[doc(&["ok", "ok"], b""), bad_json]))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(vault
        .with(|s| t.update(
            s,
            1,
            DocUpdate {
                texts: Some(&["x"]),
                ..Default::default()
            }
        ))
        .is_err());
    assert_eq!(vault.with(|s| t.count(s)).unwrap(), 1);
    assert!(ids(&vault, &t, "ok", &all()).is_empty());
    assert_eq!(ids(&vault, &t, "keep", &all()), vec![1]);
    // Reopening with other columns or another tokenizer is refused; no name is accepted that
    // could clash with the internal columns.
    let other = vault.with(|s| {
        TextTable::open(
            s,
            "strict",
            Some((vec!["title".into()], Tokenizer::Unicode61)),
        )
    });
    assert!(matches!(other, Err(Error::InvalidArgument(_))));
    let other = vault.with(|s| {
        TextTable::open(
            s,
            "strict",
            Some((vec!["title".into(), "body".into()], Tokenizer::Porter)),
        )
    });
    assert!(matches!(other, Err(Error::InvalidArgument(_))));
    for bad in [vec!["__value".to_string()], vec!["a b".into()], vec![]] {
        assert!(vault
            .with(|s| TextTable::open(s, "fresh", Some((bad, Tokenizer::Porter))))
            .is_err());
    }
    assert!(vault
        .with(|s| TextTable::find(s, "fresh"))
        .unwrap()
        .is_none());
}

#[test]
fn writes_join_the_vaults_transactions() {
    let vault = Vault::open_in_memory().unwrap();
    let t = open(&vault, "tx", &["content"], Tokenizer::Unicode61);
    let kv = vault.kv("blobs").unwrap();
    let tx = vault.transaction().unwrap();
    vault
        .with(|s| t.insert_many(s, &[doc(&["rolled back"], b"")]))
        .unwrap();
    kv.put(b"k", b"v").unwrap();
    // Inside the transaction its own writes are searchable.
    assert_eq!(ids(&vault, &t, "rolled", &all()).len(), 1);
    tx.rollback().unwrap();
    assert!(ids(&vault, &t, "rolled", &all()).is_empty());
    assert_eq!(vault.with(|s| t.count(s)).unwrap(), 0);
    assert!(kv.get(b"k").unwrap().is_none());
    let tx = vault.transaction().unwrap();
    vault
        .with(|s| t.insert_many(s, &[doc(&["committed"], b"")]))
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(ids(&vault, &t, "committed", &all()).len(), 1);
}

#[test]
fn another_connection_sees_committed_documents_and_check_finds_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let writer = Vault::open(&path).unwrap();
    let reader = Vault::open(&path).unwrap();
    reader.attach(Arc::new(TextKind));
    let t = open(&writer, "shared", &["content"], Tokenizer::Unicode61);
    let docs: Vec<[String; 1]> = (0..50).map(|i| [format!("note {i} shared")]).collect();
    let refs: Vec<[&str; 1]> = docs.iter().map(|[d]| [d.as_str()]).collect();
    let docs: Vec<NewDoc<'_>> = refs.iter().map(|d| doc(d, b"")).collect();
    writer.with(|s| t.insert_many(s, &docs)).unwrap();
    let r = reader
        .with(|s| TextTable::find(s, "shared"))
        .unwrap()
        .unwrap();
    assert_eq!(ids(&reader, &r, "shared", &all()).len(), 50);
    assert_eq!(reader.check().unwrap(), Vec::<String>::new());
    // Rows removed behind the index's back: counts and FTS5's integrity check disagree.
    writer
        .with(|s| {
            s.write(|c| {
                c.execute("DELETE FROM shared__text WHERE __id <= 5", [])?;
                Ok(())
            })
        })
        .unwrap();
    let problems = reader.check().unwrap();
    assert!(
        problems.iter().any(|p| p.contains("registry counts 50")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("index holds 50")),
        "{problems:?}"
    );
    // The index can be rebuilt from the rows (the count is the registry's to fix).
    writer.with(|s| r.rebuild(s)).unwrap();
    writer
        .with(|s| {
            s.write(|c| {
                c.execute("UPDATE ambervault_text_tables SET items = 45", [])?;
                Ok(())
            })
        })
        .unwrap();
    assert_eq!(reader.check().unwrap(), Vec::<String>::new());
    assert_eq!(ids(&reader, &r, "shared", &all()).len(), 45);
    // A dropped table's handle says so.
    assert!(writer.with(|s| TextTable::drop_table(s, "shared")).unwrap());
    assert!(matches!(
        reader.with(|s| r.count(s)),
        Err(Error::InvalidArgument(m)) if m.contains("dropped")
    ));
    assert_eq!(
        reader.with(text::text_table_names).unwrap(),
        Vec::<String>::new()
    );
}
