output "ecr_repository_url" {
  description = "ECR repository to push the image to (deploy/push_ecr.sh --repository NAME; this is REGISTRY/NAME)."
  value       = aws_ecr_repository.this.repository_url
}

output "image" {
  description = "The image the job definitions run."
  value       = local.image
}

output "deliveries_bucket" {
  description = "Bucket the deliveries land in; datasets' `from` = s3://BUCKET/PREFIX…"
  value       = aws_s3_bucket.this["deliveries"].id
}

output "deliveries_url" {
  description = "s3:// URL under which a new object starts a delivery job."
  value       = "s3://${aws_s3_bucket.this["deliveries"].id}/${var.deliveries_prefix}"
}

output "site_bucket" {
  description = "Bucket the site is published to."
  value       = aws_s3_bucket.this["site"].id
}

output "publish_url" {
  description = "SHOPSCRIBE_PUBLISH_URL given to the jobs."
  value       = local.environment["SHOPSCRIBE_PUBLISH_URL"]
}

output "site_url" {
  description = "Public URL of the site (CloudFront), or null without CloudFront; use it as publish.base_url."
  value       = var.enable_cloudfront ? "https://${aws_cloudfront_distribution.site[0].domain_name}" : null
}

output "job_queue_arn" {
  description = "Batch job queue of every shopscribe job."
  value       = aws_batch_job_queue.this.arn
}

output "job_definition_arns" {
  description = "Job definitions by role: deliver (EventBridge), run, enqueue (run --workers 0), worker (array job)."
  value       = { for k, d in aws_batch_job_definition.this : k => d.arn }
}

output "secret_arns" {
  description = "Secrets to fill with `aws secretsmanager put-secret-value` before the first job: store_url, llm_api_key, telegram_token (with enable_telegram)."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}

output "log_group_name" {
  description = "CloudWatch log group of the jobs (streams deliver/…, run/…, enqueue/…, worker/…)."
  value       = aws_cloudwatch_log_group.jobs.name
}

output "job_role_arn" {
  description = "IAM role of the shopscribe process (deliveries read, site write)."
  value       = aws_iam_role.job.arn
}

output "execution_role_arn" {
  description = "IAM role of the ECS agent (image pull, logs, secrets injection)."
  value       = aws_iam_role.execution.arn
}

output "delivery_rule_arn" {
  description = "EventBridge rule that submits a delivery job per created object."
  value       = aws_cloudwatch_event_rule.delivery.arn
}

output "schedule_arn" {
  description = "EventBridge Scheduler schedule of the periodic refresh, or null."
  value       = var.schedule_expression != "" ? aws_scheduler_schedule.refresh[0].arn : null
}

output "kms_key_arn" {
  description = "KMS key encrypting the secrets, logs, buckets and images."
  value       = local.kms_key_arn
}
