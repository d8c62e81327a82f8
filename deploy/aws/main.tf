# shopscribe on AWS: S3 deliveries -> EventBridge -> AWS Batch (Fargate) -> S3 site.
# See README.md beside this file for the picture, the inputs and the first deploy.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.name
  partition = data.aws_partition.current.partition

  deliveries_bucket = var.deliveries_bucket_name != "" ? var.deliveries_bucket_name : "${var.name}-deliveries-${local.account}"
  site_bucket       = var.site_bucket_name != "" ? var.site_bucket_name : "${var.name}-site-${local.account}"
  site_prefix       = trim(var.site_prefix, "/")

  image       = var.image != "" ? var.image : "${aws_ecr_repository.this.repository_url}:latest"
  kms_key_arn = var.kms_key_arn != "" ? var.kms_key_arn : aws_kms_key.this[0].arn

  security_group_ids = length(var.security_group_ids) > 0 ? var.security_group_ids : [aws_security_group.jobs[0].id]

  # The secrets, injected as environment variables by the execution role at task start.
  secrets = merge(
    {
      store_url   = { env = "SHOPSCRIBE_STORE_URL", description = "shopscribe's store: postgres://USER:PASSWORD@HOST:5432/DB (the workers share it)" }
      llm_api_key = { env = var.llm_api_key_env, description = "API key of the LLM provider (llm.api_key_env)" }
    },
    var.enable_telegram ? {
      telegram_token = { env = "TELEGRAM_BOT_TOKEN", description = "Telegram bot token for run notifications (notify.telegram_token_env)" }
    } : {}
  )

  environment = merge(
    {
      SHOPSCRIBE_PROJECT     = var.project_dir
      SHOPSCRIBE_PUBLISH_URL = "s3://${local.site_bucket}/${local.site_prefix}"
      AWS_REGION             = local.region
      NO_COLOR               = "1"
    },
    var.extra_environment
  )

  tags = merge({ "app" = "shopscribe", "shopscribe:deployment" = var.name }, var.tags)
}

# --- KMS: one key for the secrets, the logs, the buckets and the image repository -------------

data "aws_iam_policy_document" "kms" {
  count = var.kms_key_arn == "" ? 1 : 0

  #checkov:skip=CKV_AWS_109:The account root statement is AWS's default key policy; it delegates to IAM, where the roles below get only what they use
  #checkov:skip=CKV_AWS_111:Same default account root statement; a key policy's resource is always the key itself
  #checkov:skip=CKV_AWS_356:A key policy's "*" resource means this key only
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsTheJobsLogGroup"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:/aws/batch/${var.name}"]
    }
  }

  dynamic "statement" {
    for_each = var.enable_cloudfront ? [1] : []
    content {
      sid       = "CloudFrontReadsTheSite"
      actions   = ["kms:Decrypt"]
      resources = ["*"]
      principals {
        type        = "Service"
        identifiers = ["cloudfront.amazonaws.com"]
      }
      condition {
        test     = "StringEquals"
        variable = "AWS:SourceAccount"
        values   = [local.account]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  count                   = var.kms_key_arn == "" ? 1 : 0
  description             = "${var.name}: secrets, logs, buckets and images"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms[0].json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  count         = var.kms_key_arn == "" ? 1 : 0
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

# --- Logs -------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "jobs" {
  name              = "/aws/batch/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

# --- Secrets: created empty; their values are put out of band, never through Terraform -------
# aws secretsmanager put-secret-value --secret-id NAME/store-url --secret-string 'postgres://…'

resource "aws_secretsmanager_secret" "this" {
  for_each = local.secrets

  #checkov:skip=CKV2_AWS_57:These are third-party credentials (the LLM provider's key, a Telegram bot token) and a database URL whose password is rotated at the database; Secrets Manager cannot rotate them without a provider-specific Lambda. Rotate by putting a new value: the next job start reads it.
  name                    = "${var.name}/${replace(each.key, "_", "-")}"
  description             = each.value.description
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = 7
  tags                    = local.tags
}
