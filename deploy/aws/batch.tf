# --- Network ----------------------------------------------------------------------------------

resource "aws_security_group" "jobs" {
  #checkov:skip=CKV2_AWS_5:Attached to the Fargate compute environment (aws_batch_compute_environment.this, through local.security_group_ids), which checkov's graph does not follow
  count       = length(var.security_group_ids) == 0 ? 1 : 0
  name        = "${var.name}-batch-jobs"
  description = "shopscribe Batch jobs: nothing inbound; HTTPS and PostgreSQL outbound"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS: S3, ECR, Secrets Manager, CloudWatch Logs, the LLM provider, Telegram"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "PostgreSQL: the store (narrow it with security_group_ids and a database group)"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = local.tags
}

# --- Compute environment and queue ------------------------------------------------------------

resource "aws_batch_compute_environment" "this" {
  compute_environment_name = "${var.name}-fargate"
  type                     = "MANAGED"
  state                    = "ENABLED"

  compute_resources {
    type               = var.use_fargate_spot ? "FARGATE_SPOT" : "FARGATE"
    max_vcpus          = var.max_vcpus
    subnets            = var.subnet_ids
    security_group_ids = local.security_group_ids
  }

  tags = local.tags
}

resource "aws_batch_job_queue" "this" {
  name     = var.name
  state    = "ENABLED"
  priority = 1

  compute_environment_order {
    order               = 1
    compute_environment = aws_batch_compute_environment.this.arn
  }

  tags = local.tags
}

# --- Job definitions --------------------------------------------------------------------------
#   NAME-deliver  shopscribe deliver --bucket B --key K   (the EventBridge rule, one per object)
#   NAME-run      shopscribe run JOB                      (the schedule; by hand)
#   NAME-enqueue  shopscribe run JOB --workers 0          (a distributed run: plan into the queue)
#   NAME-worker   shopscribe worker --job JOB             (array job, after NAME-enqueue)

locals {
  job_definitions = {
    deliver = {
      command     = ["--log-format", "json", "deliver", "--bucket", "Ref::bucket", "--key", "Ref::key"]
      parameters  = {}
      description = "ingest one delivered object and run the jobs reading its dataset"
    }
    run = {
      command     = ["--log-format", "json", "run", "Ref::job"]
      parameters  = { job = var.default_job }
      description = "run one job"
    }
    enqueue = {
      command     = ["--log-format", "json", "run", "Ref::job", "--workers", "0"]
      parameters  = { job = var.default_job }
      description = "plan a distributed run into the PostgreSQL task queue"
    }
    worker = {
      command     = ["--log-format", "json", "worker", "--job", "Ref::job"]
      parameters  = { job = var.default_job }
      description = "work distributed runs until none has anything left"
    }
  }
}

resource "aws_batch_job_definition" "this" {
  for_each = local.job_definitions

  name                  = "${var.name}-${each.key}"
  type                  = "container"
  platform_capabilities = ["FARGATE"]
  propagate_tags        = true
  parameters            = each.value.parameters

  retry_strategy {
    attempts = var.job_attempts
    # shopscribe's own failures are final (1: the run failed; 2: bad usage or configuration);
    # anything else (the task could not start, Spot reclaimed it) is retried.
    evaluate_on_exit {
      on_exit_code = "1"
      action       = "EXIT"
    }
    evaluate_on_exit {
      on_exit_code = "2"
      action       = "EXIT"
    }
    evaluate_on_exit {
      on_reason = "*"
      action    = "RETRY"
    }
  }

  timeout {
    attempt_duration_seconds = var.job_timeout_seconds
  }

  container_properties = jsonencode({
    image            = local.image
    command          = each.value.command
    jobRoleArn       = aws_iam_role.job.arn
    executionRoleArn = aws_iam_role.execution.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.job_vcpu) },
      { type = "MEMORY", value = tostring(var.job_memory_mib) },
    ]
    environment = [for k, v in local.environment : { name = k, value = v }]
    secrets = [for k, s in local.secrets : {
      name      = s.env
      valueFrom = aws_secretsmanager_secret.this[k].arn
    }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.jobs.name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = each.key
      }
    }
    networkConfiguration = {
      assignPublicIp = var.assign_public_ip ? "ENABLED" : "DISABLED"
    }
    fargatePlatformConfiguration = {
      platformVersion = "LATEST"
    }
    ephemeralStorage = {
      sizeInGiB = 21
    }
  })

  tags = merge(local.tags, { "shopscribe:command" = each.value.description })
}
