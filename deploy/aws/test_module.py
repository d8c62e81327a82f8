#!/usr/bin/env python3
"""Static checks of the Terraform module in this folder, for machines without `terraform`.

Parses every .tf file with python-hcl2 (a syntax error fails), then asserts the structure the
deployment relies on: every variable and output documented (and variables typed), the resources
present, and their wiring: the S3 rule submits the `deliver` job to the queue, the job
definitions run the right commands with both roles and every secret, the roles hold only the
permissions listed in iam.tf's header. Run: python3 deploy/aws/test_module.py
"""

import json
import pathlib
import re
import sys

import hcl2

HERE = pathlib.Path(__file__).resolve().parent
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def load():
    blocks = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}}
    for tf in sorted(HERE.glob("*.tf")):
        with tf.open() as f:
            try:
                doc = hcl2.load(f)
            except Exception as e:  # noqa: BLE001 - any parse error is a failure
                failures.append(f"{tf.name} does not parse: {e}")
                continue
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        blocks[kind][f"{rtype}.{name}"] = body
        for kind in ("variable", "output"):
            for entry in doc.get(kind, []):
                for name, body in entry.items():
                    blocks[kind][name] = body
        for entry in doc.get("locals", []):
            blocks["locals"].update({k: attr(entry, k) for k in entry})
    return blocks


def attr(body, key, default=None):
    """An attribute's value (python-hcl2 8 wraps attribute values, and blocks, in a list)."""
    v = body.get(key, default) if isinstance(body, dict) else default
    if isinstance(v, list) and len(v) == 1:
        return v[0]
    return v


def text(x):
    """Any parsed HCL value as text, for searching references in it."""
    return json.dumps(x, default=str)


def main():
    b = load()
    res, data, var, out, loc = b["resource"], b["data"], b["variable"], b["output"], b["locals"]

    # Variables and outputs: documented, variables typed.
    check(len(var) >= 20, f"expected the module's variables, found {len(var)}")
    for name, body in var.items():
        check(str(attr(body, "description", "")).strip(), f"variable {name} has no description")
        check("type" in body, f"variable {name} has no type")
    check(len(out) >= 10, f"expected the module's outputs, found {len(out)}")
    for name, body in out.items():
        check(str(attr(body, "description", "")).strip(), f"output {name} has no description")
    for name in ["vpc_id", "subnet_ids", "image", "deliveries_prefix", "schedule_expression",
                 "enable_cloudfront", "log_retention_days", "worker_array_size", "default_job"]:
        check(name in var, f"variable {name} missing")
    for name in ["ecr_repository_url", "deliveries_bucket", "site_bucket", "job_queue_arn",
                 "job_definition_arns", "secret_arns", "log_group_name", "job_role_arn",
                 "execution_role_arn"]:
        check(name in out, f"output {name} missing")

    # The resources.
    for r in ["aws_ecr_repository.this", "aws_ecr_lifecycle_policy.this", "aws_s3_bucket.this",
              "aws_s3_bucket_notification.deliveries", "aws_s3_bucket_public_access_block.this",
              "aws_cloudfront_distribution.site", "aws_cloudwatch_event_rule.delivery",
              "aws_cloudwatch_event_target.delivery", "aws_batch_compute_environment.this",
              "aws_batch_job_queue.this", "aws_batch_job_definition.this",
              "aws_scheduler_schedule.refresh", "aws_secretsmanager_secret.this",
              "aws_iam_role.job", "aws_iam_role.execution", "aws_iam_role.submit",
              "aws_cloudwatch_log_group.jobs"]:
        check(r in res, f"resource {r} missing")
    if failures:
        return

    ecr = res["aws_ecr_repository.this"]
    check(attr(attr(ecr, "image_scanning_configuration"), "scan_on_push") is True, "ECR: scan on push")
    check("expire" in text(res["aws_ecr_lifecycle_policy.this"]), "ECR lifecycle expires images")

    check(attr(res["aws_s3_bucket_notification.deliveries"], "eventbridge") is True,
          "the deliveries bucket sends its events to EventBridge")
    check("deliveries" in text(res["aws_s3_bucket_notification.deliveries"]["bucket"]),
          "the notification is on the deliveries bucket")
    check("count" in res["aws_cloudfront_distribution.site"], "CloudFront is optional (count)")
    check("count" in res["aws_scheduler_schedule.refresh"], "the schedule is optional (count)")

    # Rule: S3 Object Created under the prefix -> the queue, the deliver job, bucket and key.
    rule = text(res["aws_cloudwatch_event_rule.delivery"]["event_pattern"])
    for want in ["aws.s3", "Object Created", "var.deliveries_prefix", "local.deliveries_bucket"]:
        check(want in rule, f"the rule's pattern names {want}")
    target = res["aws_cloudwatch_event_target.delivery"]
    check("aws_batch_job_queue.this.arn" in text(target["arn"]), "the rule's target is the job queue")
    check("aws_iam_role.submit.arn" in text(target["role_arn"]), "the rule submits with the submit role")
    check('aws_batch_job_definition.this[\\"deliver\\"]' in text(target["batch_target"]) or
          "aws_batch_job_definition.this['deliver']" in text(target["batch_target"]) or
          'this["deliver"]' in text(target["batch_target"]).replace('\\"', '"'),
          "the rule submits the deliver job definition")
    transformer = text(target["input_transformer"])
    for want in ["$.detail.bucket.name", "$.detail.object.key", "Parameters"]:
        check(want in transformer, f"the input transformer passes {want}")
    check(not any(k.startswith("aws_lambda") for k in res), "no Lambda between S3 and Batch")

    # Compute environment: Fargate; the queue uses it.
    ce = text(res["aws_batch_compute_environment.this"])
    check("FARGATE" in ce, "the compute environment is Fargate")
    check("aws_batch_compute_environment.this.arn" in text(res["aws_batch_job_queue.this"]),
          "the queue uses the compute environment")

    # Job definitions: the commands, Fargate, both roles, every secret, the log group.
    jd = loc.get("job_definitions", {})
    commands = {k: v.get("command") for k, v in jd.items()}
    expected = {
        "deliver": ["deliver", "--bucket", "Ref::bucket", "--key", "Ref::key"],
        "run": ["run", "Ref::job"],
        "enqueue": ["run", "Ref::job", "--workers", "0"],
        "worker": ["worker", "--job", "Ref::job"],
    }
    for name, cmd in expected.items():
        got = commands.get(name) or []
        check(got[-len(cmd):] == cmd, f"job definition {name} runs {cmd}, not {got}")
    props = text(res["aws_batch_job_definition.this"]["container_properties"])
    for want in ["aws_iam_role.job.arn", "aws_iam_role.execution.arn",
                 "aws_secretsmanager_secret.this[k].arn", "aws_cloudwatch_log_group.jobs.name",
                 "awslogs", "VCPU", "MEMORY", "local.image"]:
        check(want in props, f"the job definitions use {want}")
    check("FARGATE" in text(res["aws_batch_job_definition.this"]["platform_capabilities"]),
          "the job definitions are for Fargate")
    secrets = text(loc.get("secrets"))
    for env in ["SHOPSCRIBE_STORE_URL", "var.llm_api_key_env", "TELEGRAM_BOT_TOKEN"]:
        check(env in secrets, f"the secret injected as {env}")
    check("secret_string" not in text(res), "no secret value in the module (set out of band)")
    check(not any(k.startswith("aws_secretsmanager_secret_version") for k in res),
          "no secret version (a value would land in the state)")

    # Log retention.
    check("var.log_retention_days" in text(res["aws_cloudwatch_log_group.jobs"]), "log retention")

    # IAM: who may do what.
    def actions(doc):
        found = set()
        for st in data[f"aws_iam_policy_document.{doc}"].get("statement", []):
            for a in attr(st, "actions", []) or []:
                found.add(a)
        return found

    execution, job, submit = actions("execution"), actions("job"), actions("submit")
    check({"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "logs:PutLogEvents",
           "secretsmanager:GetSecretValue"} <= execution, f"execution role: pull, log, secrets: {execution}")
    check(not any(a.startswith("s3:") for a in execution), "the execution role has no S3 access")
    check({"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= job, f"job role: read and publish: {job}")
    check(not any(a.startswith(("ecr:", "secretsmanager:", "iam:", "batch:")) for a in job),
          f"the job role has only S3 and the bucket key: {job}")
    check(all("*" not in a for a in execution | job | submit),
          "no wildcard actions in the roles")
    check(submit == {"batch:SubmitJob", "kms:Decrypt"},
          f"the submit role only submits jobs (and reads the schedule's key): {submit}")
    job_doc = text(data["aws_iam_policy_document.job"])
    check("var.deliveries_prefix" in job_doc, "deliveries read is limited to the prefix")
    check("local.site_prefix" in job_doc, "site write is limited to the site prefix")
    check("PutObject" not in text([s for s in data["aws_iam_policy_document.job"]["statement"]
                                   if "deliveries" in text(s.get("resources"))]),
          "the job cannot write the deliveries")
    for role in ["job", "execution"]:
        check("ecs_tasks_trust" in text(res[f"aws_iam_role.{role}"]["assume_role_policy"]),
              f"the {role} role is assumed by ECS tasks")
    check("aws_iam_role.submit.arn" in text(res["aws_scheduler_schedule.refresh"]),
          "the schedule submits with the submit role")
    check("batch:submitJob" in text(res["aws_scheduler_schedule.refresh"]),
          "the schedule calls Batch SubmitJob")

    # No credentials in the module.
    for tf in HERE.glob("*.tf"):
        body = tf.read_text()
        check(not re.search(r"AKIA[0-9A-Z]{16}", body), f"{tf.name}: an access key id")
        check(not re.search(r"(?i)(password|secret_key)\s*=\s*\"[^\"]+\"", body), f"{tf.name}: a literal secret")


if __name__ == "__main__":
    main()
    if failures:
        print("deploy/aws: %d problem(s):" % len(failures))
        for f in failures:
            print("  - " + f)
        sys.exit(1)
    print("deploy/aws: %d .tf files parse; resources, wiring and IAM as expected"
          % len(list(HERE.glob("*.tf"))))
