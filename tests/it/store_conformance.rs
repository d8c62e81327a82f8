//! One conformance suite for the Store trait, run unchanged against SQLite and PostgreSQL.

use crate::support;

use shopscribe::store::{
    BatchItem, BatchStatus, GenerationStatus, NewGeneration, RunFigures, RunStatus, Store,
};
use std::sync::Arc;
use support::pg::TestDb;

fn generation(
    run_id: i64,
    key: &str,
    hash: &str,
    status: GenerationStatus,
    tokens_out: u32,
) -> NewGeneration {
    NewGeneration {
        run_id,
        job: "j".into(),
        entity_key: key.into(),
        input_hash: hash.into(),
        status,
        prompt_system: "sys".into(),
        prompt_user: format!("user {key}"),
        output: (status != GenerationStatus::Failed).then(|| format!("{{\"k\":\"{key}\"}}")),
        error: (status != GenerationStatus::Ok).then(|| "bad".to_string()),
        provider: "offline".into(),
        model: "m".into(),
        tokens_in: 10,
        tokens_out,
        cost_usd: 0.5,
        latency_ms: 7,
        attempts: 2,
        attempt_log: vec!["transient".into(), "ok".into()],
    }
}

/// Runs: created, finished with their figures, listed newest first.
async fn runs(store: Arc<dyn Store>) {
    // Runs.
    let r1 = store.create_run("j", "offline", "m").await.unwrap();
    let r2 = store.create_run("other", "offline", "m").await.unwrap();
    assert!(r2 > r1);
    let run = store.run(r1).await.unwrap().unwrap();
    assert_eq!((run.status.as_str(), run.job.as_str()), ("running", "j"));
    assert!(run.finished_at.is_none());
    let figures = RunFigures {
        entities: 3,
        generated: 2,
        skipped: 1,
        failed: 0,
        pending: 0,
        tokens_in: 20,
        tokens_out: 30,
        cost_usd: 1.25,
        duration_ms: 99,
        pages_written: 4,
        pages_removed: 2,
    };
    store
        .finish_run(r1, RunStatus::Succeeded, &figures, None)
        .await
        .unwrap();
    let run = store.run(r1).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.figures, figures);
    assert!(run.finished_at.as_deref().unwrap() >= run.started_at.as_str());
    assert!(store.run(9999).await.unwrap().is_none());
    assert_eq!(store.runs(Some("j"), 10).await.unwrap().len(), 1);
    assert_eq!(store.runs(None, 10).await.unwrap().len(), 2);
    assert_eq!(store.runs(None, 1).await.unwrap()[0].id, r2, "newest first");
}

/// Generations are appended; each entity's current pointer keeps its last good text.
async fn generations_and_current_pointer(store: Arc<dyn Store>) {
    let r1 = store.create_run("j", "offline", "m").await.unwrap();
    // Generations and the current pointer.
    store
        .record_generations(&[
            generation(r1, "a", "h1", GenerationStatus::Ok, 100),
            generation(r1, "b", "h1", GenerationStatus::Invalid, 50),
            generation(r1, "c", "h1", GenerationStatus::Failed, 0),
        ])
        .await
        .unwrap();
    // A later failure for `a` keeps its good text; a later success for `b` sets one.
    store
        .record_generations(&[
            generation(r1, "a", "h2", GenerationStatus::Failed, 0),
            generation(r1, "b", "h2", GenerationStatus::Ok, 300),
        ])
        .await
        .unwrap();
    let states = store.entity_states("j").await.unwrap();
    assert_eq!(states.len(), 3);
    let a = &states["a"];
    assert_eq!(
        (
            a.last_status.as_str(),
            a.last_input_hash.as_str(),
            a.good_input_hash.as_deref()
        ),
        ("failed", "h2", Some("h1"))
    );
    assert_eq!(states["b"].good_input_hash.as_deref(), Some("h2"));
    assert_eq!(states["c"].good_generation_id, None);
    assert!(store.entity_states("nope").await.unwrap().is_empty());

    let good = store
        .good_generations("j", &["a".into(), "b".into(), "c".into(), "zzz".into()])
        .await
        .unwrap();
    assert_eq!(
        good.iter()
            .map(|g| (g.entity_key.as_str(), g.input_hash.as_str()))
            .collect::<Vec<_>>(),
        vec![("a", "h1"), ("b", "h2")]
    );
    assert_eq!(good[0].output, "{\"k\":\"a\"}");
    let only_b = store.good_generations("j", &["b".into()]).await.unwrap();
    assert_eq!(only_b.len(), 1);

    let history = store.generations_of("j", "a").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].0.input_hash, "h1");
    assert_eq!(history[1].0.status, GenerationStatus::Failed);
    assert_eq!(
        history[0].0.attempt_log,
        vec!["transient".to_string(), "ok".to_string()]
    );
    assert_eq!(
        (
            history[0].0.tokens_out,
            history[0].0.latency_ms,
            history[0].0.attempts
        ),
        (100, 7, 2)
    );
    assert!((history[0].0.cost_usd - 0.5).abs() < 1e-9);
    assert!(
        history[0].1 <= history[1].1,
        "created_at sorts in time order"
    );

    let avg = store
        .average_output_tokens("j", "m")
        .await
        .unwrap()
        .unwrap();
    assert!(
        (avg - 200.0).abs() < 1e-9,
        "average of the good ones (100, 300): {avg}"
    );
    assert_eq!(
        store
            .average_output_tokens("j", "other-model")
            .await
            .unwrap(),
        None
    );
}

/// The good texts of a few keys (read by key) and of many (one pass over the job) are the same
/// rows, in key order; keys that need escaping in the list and keys without a text are fine.
async fn good_generations_by_key(store: Arc<dyn Store>) {
    let run = store.create_run("j", "offline", "m").await.unwrap();
    let odd = ["it's \"quoted\"", "back\\slash", "ünïcode ✓", "what?"];
    let mut keys: Vec<String> = (0..1200).map(|i| format!("k{i:04}")).collect();
    keys.extend(odd.iter().map(|k| k.to_string()));
    let batch: Vec<NewGeneration> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let status = if i < 1200 && i % 7 == 3 {
                GenerationStatus::Failed
            } else {
                GenerationStatus::Ok
            };
            generation(run, k, "h", status, 1)
        })
        .collect();
    store.record_generations(&batch).await.unwrap();
    let mut asked: Vec<String> = odd.iter().map(|k| k.to_string()).collect();
    asked.extend(["k0003", "k0004", "k0004", "absent"].map(String::from));
    let few = store.good_generations("j", &asked).await.unwrap();
    // In the database's key order (its collation), the same in both reads (compared below).
    let mut few_keys: Vec<&str> = few.iter().map(|g| g.entity_key.as_str()).collect();
    few_keys.sort_unstable();
    let mut expected: Vec<&str> = odd.iter().copied().chain(["k0004"]).collect();
    expected.sort_unstable();
    assert_eq!(few_keys, expected, "k0003 failed, `absent` has no text");
    assert_eq!(
        few[0].output,
        format!("{{\"k\":\"{}\"}}", few[0].entity_key)
    );
    let many = store.good_generations("j", &keys).await.unwrap();
    assert_eq!(
        many.len(),
        keys.len() - (0..1200).filter(|i| i % 7 == 3).count()
    );
    let from_many: Vec<_> = many
        .iter()
        .filter(|g| asked.contains(&g.entity_key))
        .map(|g| (&g.entity_key, g.generation_id, &g.output, &g.created_at))
        .collect();
    let from_few: Vec<_> = few
        .iter()
        .map(|g| (&g.entity_key, g.generation_id, &g.output, &g.created_at))
        .collect();
    assert_eq!(from_few, from_many);
    assert!(store.good_generations("j", &[]).await.unwrap().is_empty());
}

/// Batches: recorded with their items, submitted, collected.
async fn batches(store: Arc<dyn Store>) {
    let r1 = store.create_run("j", "offline", "m").await.unwrap();
    // Batches.
    let items = vec![
        BatchItem {
            custom_id: "h:x".into(),
            entity_key: "x".into(),
            input_hash: "h".into(),
            prompt_system: "s".into(),
            prompt_user: "u".into(),
        },
        BatchItem {
            custom_id: "h:y".into(),
            entity_key: "y".into(),
            input_hash: "h".into(),
            prompt_system: "s".into(),
            prompt_user: "u2".into(),
        },
    ];
    let row = store.insert_batch(r1, "j", "file-1", &items).await.unwrap();
    let open = store.open_batches("j").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (
            open[0].status.as_str(),
            open[0].batch_id.as_deref(),
            open[0].requests
        ),
        ("submitting", None, 2)
    );
    store
        .update_batch(row, Some("batch-9"), BatchStatus::Submitted, None)
        .await
        .unwrap();
    assert_eq!(
        store.open_batches("j").await.unwrap()[0]
            .batch_id
            .as_deref(),
        Some("batch-9")
    );
    assert_eq!(store.batch_items(row).await.unwrap(), items);
    store
        .update_batch(row, None, BatchStatus::Collected, None)
        .await
        .unwrap();
    assert!(store.open_batches("j").await.unwrap().is_empty());
}

/// Named state values and the lease locks.
async fn service_state_and_locks(store: Arc<dyn Store>) {
    // Service state and job locks.
    store.ping().await.unwrap();
    assert_eq!(store.state_get("watch:x").await.unwrap(), None);
    store.state_set("watch:x", "v1").await.unwrap();
    store.state_set("watch:x", "v2").await.unwrap();
    assert_eq!(
        store.state_get("watch:x").await.unwrap().as_deref(),
        Some("v2")
    );
    let ttl = std::time::Duration::from_secs(60);
    assert!(store.try_lock_job("j", "a", ttl).await.unwrap());
    assert!(
        !store.try_lock_job("j", "b", ttl).await.unwrap(),
        "held by a"
    );
    assert!(
        store.try_lock_job("j", "a", ttl).await.unwrap(),
        "a extends its own"
    );
    assert!(
        store.try_lock_job("other", "b", ttl).await.unwrap(),
        "per job"
    );
    store.unlock_job("j", "b").await.unwrap();
    assert!(
        !store.try_lock_job("j", "b", ttl).await.unwrap(),
        "b cannot free a's lock"
    );
    store.unlock_job("j", "a").await.unwrap();
    assert!(store.try_lock_job("j", "b", ttl).await.unwrap());
    // An expired lock is free for anyone.
    assert!(
        store
            .try_lock_job("k", "a", std::time::Duration::ZERO)
            .await
            .unwrap()
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(store.try_lock_job("k", "b", ttl).await.unwrap());
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

/// The store id: made once, the same for every caller after.
async fn store_id(store: Arc<dyn Store>) {
    let id = shopscribe::store::store_id(store.as_ref()).await.unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(
        shopscribe::store::store_id(store.as_ref()).await.unwrap(),
        id
    );
    assert_eq!(store.state_init("store_id", "other").await.unwrap(), id);
}

/// Runs whose lease lapsed are marked abandoned with the figures of what they stored; a renewed
/// one, a finished one and one without a lease (distributed) are left alone.
async fn run_leases(store: Arc<dyn Store>) {
    use std::time::Duration;
    let lapsed = store.create_run("lease", "offline", "m").await.unwrap();
    let renewed = store.create_run("lease", "offline", "m").await.unwrap();
    let unleased = store.create_run("lease", "offline", "m").await.unwrap();
    let finished = store.create_run("lease", "offline", "m").await.unwrap();
    store
        .record_generations(&[
            generation(lapsed, "a", "h1", GenerationStatus::Ok, 5),
            generation(lapsed, "b", "h2", GenerationStatus::Invalid, 5),
        ])
        .await
        .unwrap();
    assert!(
        store.abandon_lapsed_runs().await.unwrap().is_empty(),
        "fresh leases"
    );
    let short = Some(Duration::from_millis(1));
    store.renew_run_lease(lapsed, short).await.unwrap();
    store.renew_run_lease(finished, short).await.unwrap();
    store.renew_run_lease(unleased, None).await.unwrap();
    store.renew_run_lease(unleased, short).await.unwrap();
    store
        .finish_run(finished, RunStatus::Succeeded, &RunFigures::default(), None)
        .await
        .unwrap();
    store
        .renew_run_lease(renewed, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let marked = store.abandon_lapsed_runs().await.unwrap();
    assert_eq!(
        marked
            .iter()
            .map(|r| (r.id, r.job.as_str()))
            .collect::<Vec<_>>(),
        [(lapsed, "lease")]
    );
    let run = store.run(lapsed).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Abandoned);
    assert_eq!((run.figures.generated, run.figures.failed), (1, 1));
    assert_eq!(run.figures.tokens_in, 20, "both attempts' tokens");
    assert!(run.finished_at.is_some());
    assert!(run.error.unwrap().starts_with("abandoned:"));
    for (id, status) in [
        (renewed, RunStatus::Running),
        (unleased, RunStatus::Running),
        (finished, RunStatus::Succeeded),
    ] {
        assert_eq!(store.run(id).await.unwrap().unwrap().status, status);
    }
    assert!(
        store.abandon_lapsed_runs().await.unwrap().is_empty(),
        "once"
    );
}

/// Every case as a test of its own on each backend (`sqlite::runs`, `postgres::runs`, …), each
/// on a fresh store: a failing case names itself and its backend.
macro_rules! on_both_backends {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("s.db").display());
                    let store = shopscribe::store::open(&url).await.unwrap();
                    assert_eq!(store.backend(), "sqlite");
                    super::$case(store).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = super::TestDb::new().await;
                    let store = shopscribe::store::open(&db.url).await.unwrap();
                    assert_eq!(store.backend(), "postgres");
                    super::$case(store).await;
                }
            )+
        }
    };
}

on_both_backends!(
    runs,
    generations_and_current_pointer,
    good_generations_by_key,
    batches,
    service_state_and_locks,
    run_leases,
    store_id,
);

#[tokio::test]
async fn a_postgres_store_opened_again_applies_no_migration_twice() {
    let db = TestDb::new().await;
    let store = shopscribe::store::open(&db.url).await.unwrap();
    store.create_run("j", "offline", "m").await.unwrap();
    drop(store);
    // A fresh pool (the process's handle was dropped): the migrations are checked, none rerun.
    let again = shopscribe::store::open(&db.url).await.unwrap();
    assert_eq!(again.runs(None, 10).await.unwrap().len(), 1);
}
