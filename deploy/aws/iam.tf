# Least privilege, one role per principal:
#   execution role  (ECS agent, before the process starts): pull the image, write the logs,
#                   fetch the secrets it injects as environment variables
#   job role        (the shopscribe process): read the deliveries, write the site
#   events role     (EventBridge rule): submit the delivery job to the queue
#   scheduler role  (EventBridge Scheduler, optional): submit the run job to the queue

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# --- Execution role ---------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${var.name}-batch-execution"
  description        = "shopscribe Batch jobs: pull the image, write logs, inject the secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource-level permissions
  }
  statement {
    sid = "PullTheImage"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = [aws_ecr_repository.this.arn]
  }
  statement {
    sid       = "WriteTheJobsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.jobs.arn}:*"]
  }
  statement {
    sid       = "InjectTheSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for s in aws_secretsmanager_secret.this : s.arn]
  }
  statement {
    sid       = "DecryptTheSecretsAndImage"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-log-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# --- Job role ---------------------------------------------------------------------------------

resource "aws_iam_role" "job" {
  name               = "${var.name}-batch-job"
  description        = "shopscribe process: read deliveries, write the site"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "job" {
  statement {
    sid       = "ListTheDeliveries"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["deliveries"].arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.deliveries_prefix}*"]
    }
  }
  statement {
    sid       = "ReadTheDeliveries"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.this["deliveries"].arn}/${var.deliveries_prefix}*"]
  }
  statement {
    sid       = "ListTheSite"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this["site"].arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.site_prefix}/*", local.site_prefix]
    }
  }
  statement {
    sid       = "PublishTheSite"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this["site"].arn}/${local.site_prefix}/*"]
  }
  statement {
    sid       = "UseTheBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "job" {
  name   = "deliveries-read-site-write"
  role   = aws_iam_role.job.id
  policy = data.aws_iam_policy_document.job.json
}

# --- EventBridge (rule and scheduler) -> Batch ------------------------------------------------

data "aws_iam_policy_document" "events_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "submit" {
  name               = "${var.name}-submit-jobs"
  description        = "EventBridge rule and Scheduler: submit shopscribe jobs"
  assume_role_policy = data.aws_iam_policy_document.events_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "submit" {
  statement {
    sid     = "SubmitTheDeliveryAndRunJobs"
    actions = ["batch:SubmitJob"]
    resources = [
      aws_batch_job_queue.this.arn,
      # Any revision of the two job definitions EventBridge submits.
      "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${var.name}-deliver",
      "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${var.name}-deliver:*",
      "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${var.name}-run",
      "arn:${local.partition}:batch:${local.region}:${local.account}:job-definition/${var.name}-run:*",
    ]
  }
  statement {
    sid       = "ReadTheScheduleEncryptedWithTheKey"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "submit" {
  name   = "submit-jobs"
  role   = aws_iam_role.submit.id
  policy = data.aws_iam_policy_document.submit.json
}
