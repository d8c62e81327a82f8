//! What `POST /v1/runs` accepts: `{"job": "NAME"}`, an S3 event notification (sent by S3 to SNS
//! / SQS / a Lambda and forwarded as is) or an EventBridge "Object Created" event.

use crate::config::Project;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum RunRequest {
    /// Run this job.
    Job(String),
    /// These objects arrived (`s3://bucket/key`): ingest them, then run the jobs reading them.
    Objects(Vec<String>),
    /// S3's `s3:TestEvent`, sent when a notification is configured: nothing to do.
    Test,
}

pub fn parse(body: &Value) -> Result<RunRequest, String> {
    let Some(obj) = body.as_object() else {
        return Err("the body must be a JSON object: {\"job\": \"NAME\"}, an S3 event or an EventBridge event".into());
    };
    if let Some(job) = obj.get("job") {
        return match job.as_str() {
            Some(j) if !j.is_empty() => Ok(RunRequest::Job(j.to_string())),
            _ => Err("`job` must be a non-empty string".into()),
        };
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(RunRequest::Test);
    }
    if let Some(records) = obj.get("Records") {
        let records = records
            .as_array()
            .ok_or("`Records` must be an array (S3 event notification)")?;
        let mut uris = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if r.get("eventSource").and_then(Value::as_str) != Some("aws:s3") {
                return Err(format!("Records[{i}] is not an S3 event (eventSource)"));
            }
            let name = r
                .get("eventName")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("Records[{i}] has no eventName string"))?;
            if !name.starts_with("ObjectCreated") {
                continue; // deletions and the like do not bring data
            }
            uris.push(
                object_uri(
                    r.pointer("/s3/bucket/name"),
                    r.pointer("/s3/object/key"),
                    true,
                )
                .map_err(|m| format!("Records[{i}]: {m}"))?,
            );
        }
        return Ok(RunRequest::Objects(uris));
    }
    if obj.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let kind = obj
            .get("detail-type")
            .and_then(Value::as_str)
            .ok_or("an EventBridge event needs a `detail-type` string")?;
        if kind != "Object Created" {
            return Ok(RunRequest::Objects(Vec::new()));
        }
        // EventBridge keys are not URL-encoded.
        let uri = object_uri(
            obj.get("detail").and_then(|d| d.pointer("/bucket/name")),
            obj.get("detail").and_then(|d| d.pointer("/object/key")),
            false,
        )?;
        return Ok(RunRequest::Objects(vec![uri]));
    }
    Err("unrecognised body: send {\"job\": \"NAME\"}, an S3 event notification (Records) or an EventBridge Object Created event".into())
}

fn object_uri(
    bucket: Option<&Value>,
    key: Option<&Value>,
    encoded: bool,
) -> Result<String, String> {
    let bucket = bucket
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .ok_or("missing the bucket name")?;
    let key = key
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or("missing the object key")?;
    let key = if encoded {
        // S3 notifications form-encode keys: '+' is a space, %XX a byte.
        url::form_urlencoded::parse(format!("k={key}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    } else {
        key.to_string()
    };
    Ok(format!("s3://{bucket}/{key}"))
}

/// The datasets whose `from` location holds each object (objects of unknown formats and
/// outside every dataset are left out), and the jobs that read those datasets.
pub fn route(project: &Project, uris: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut objects = Vec::new();
    let mut jobs = Vec::new();
    for uri in uris {
        let file = uri.rsplit('/').next().unwrap_or("");
        if crate::ingest::read::format_of(file).is_none() {
            continue;
        }
        for ds in project.datasets.values() {
            let from = ds.from.trim_end_matches('/');
            if uri.starts_with(&format!("{from}/")) {
                objects.push((ds.name.clone(), uri.clone()));
                for job in project.jobs_reading(&ds.name) {
                    if !jobs.contains(&job.name) {
                        jobs.push(job.name.clone());
                    }
                }
            }
        }
    }
    (objects, jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_job_request() {
        assert_eq!(
            parse(&json!({"job": "domain_summaries"})).unwrap(),
            RunRequest::Job("domain_summaries".into())
        );
        assert!(parse(&json!({"job": 3})).is_err());
        assert!(parse(&json!({"job": ""})).is_err());
        assert!(parse(&json!({"job": null})).is_err());
        assert!(parse(&json!(["job"])).is_err());
        assert!(
            parse(&json!({"hello": 1}))
                .unwrap_err()
                .contains("unrecognised")
        );
    }

    #[test]
    fn an_s3_event_notification() {
        // The shape S3 sends (trimmed to the fields that matter), with a form-encoded key.
        let body = json!({"Records": [
            {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
             "eventName": "ObjectCreated:Put",
             "s3": {"bucket": {"name": "raw", "arn": "arn:aws:s3:::raw"},
                    "object": {"key": "reviews/2026-11/part+1%2B2.jsonl", "size": 1024}}},
            {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete",
             "s3": {"bucket": {"name": "raw"}, "object": {"key": "reviews/old.jsonl"}}}
        ]});
        assert_eq!(
            parse(&body).unwrap(),
            RunRequest::Objects(vec!["s3://raw/reviews/2026-11/part 1+2.jsonl".into()])
        );
        assert_eq!(
            parse(&json!({"Service": "Amazon S3", "Event": "s3:TestEvent"})).unwrap(),
            RunRequest::Test
        );
        let bad = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "raw"}}}]});
        assert!(parse(&bad).unwrap_err().contains("object key"));
        // What the OpenAPI schema rejects is rejected: a record without an eventName string.
        let no_name = json!({"Records": [{"eventSource": "aws:s3", "eventName": null}]});
        assert!(parse(&no_name).unwrap_err().contains("eventName"));
    }

    #[test]
    fn an_eventbridge_event() {
        let body = json!({
            "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
            "time": "2026-11-21T18:00:00Z", "region": "eu-west-1",
            "resources": ["arn:aws:s3:::raw"],
            "detail": {"version": "0", "bucket": {"name": "raw"},
                       "object": {"key": "reviews/part 1.jsonl", "size": 5, "etag": "b1946ac9"},
                       "reason": "PutObject"}
        });
        assert_eq!(
            parse(&body).unwrap(),
            RunRequest::Objects(vec!["s3://raw/reviews/part 1.jsonl".into()])
        );
        // Nulls the schema rejects are rejected, not ignored.
        for bad in [
            json!({"source": "aws.s3", "detail-type": null}),
            json!({"source": "aws.s3"}),
            json!({"source": "aws.s3", "detail-type": "Object Created", "detail": null}),
            json!({"source": null, "detail-type": "Object Created"}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse(&json!({"source": "aws.s3", "detail-type": "Object Deleted"})).unwrap(),
            RunRequest::Objects(vec![])
        );
    }
}
