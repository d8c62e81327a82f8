# --- A delivery starts a job: S3 -> EventBridge -> Batch, no Lambda in between ------------------

resource "aws_cloudwatch_event_rule" "delivery" {
  name        = "${var.name}-delivery"
  description = "An object created under s3://${local.deliveries_bucket}/${var.deliveries_prefix} submits the ${var.name}-deliver Batch job"
  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [local.deliveries_bucket] }
      object = { key = [{ prefix = var.deliveries_prefix }] }
    }
  })
  tags = local.tags
}

resource "aws_cloudwatch_event_target" "delivery" {
  rule      = aws_cloudwatch_event_rule.delivery.name
  target_id = "batch-deliver"
  arn       = aws_batch_job_queue.this.arn
  role_arn  = aws_iam_role.submit.arn

  batch_target {
    job_definition = aws_batch_job_definition.this["deliver"].arn
    job_name       = "${var.name}-deliver"
  }

  # The event's bucket and key become the job's parameters (Ref::bucket, Ref::key); the keys of
  # EventBridge events are not URL-encoded.
  input_transformer {
    input_paths = {
      bucket = "$.detail.bucket.name"
      key    = "$.detail.object.key"
    }
    input_template = <<-EOT
      {"Parameters": {"bucket": <bucket>, "key": <key>}}
    EOT
  }

  # EventBridge retries a submission that fails (throttling, the queue being updated) for a day.
  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }
}

# --- Optional: a cron-style refresh (EventBridge Scheduler -> Batch SubmitJob) ----------------

resource "aws_scheduler_schedule" "refresh" {
  count       = var.schedule_expression != "" ? 1 : 0
  name        = "${var.name}-refresh"
  description = "Periodic `shopscribe run ${var.default_job}`"

  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  kms_key_arn                  = local.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = "arn:${local.partition}:scheduler:::aws-sdk:batch:submitJob"
    role_arn = aws_iam_role.submit.arn
    input = jsonencode({
      JobName       = "${var.name}-refresh"
      JobQueue      = aws_batch_job_queue.this.arn
      JobDefinition = aws_batch_job_definition.this["run"].arn
      Parameters    = { job = var.default_job }
    })
    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 10
    }
  }
}
