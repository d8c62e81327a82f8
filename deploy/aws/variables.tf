variable "name" {
  description = "Name prefix of every resource (ECR repository, buckets' prefix, Batch resources, roles, log group, secrets)."
  type        = string
  default     = "shopscribe"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters: lower-case letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "image" {
  description = "Container image the Batch jobs run, REGISTRY/REPOSITORY:TAG or @DIGEST (deploy/push_ecr.sh prints it). Empty: the module's ECR repository with tag `latest`."
  type        = string
  default     = ""
}

variable "project_dir" {
  description = "The project folder inside the image (shopscribe.toml). The image built with deploy/build_and_run.sh --project DIR has it at /srv/shopscribe."
  type        = string
  default     = "/srv/shopscribe"
}

variable "deliveries_bucket_name" {
  description = "Name of the bucket data deliveries land in. Empty: NAME-deliveries-ACCOUNT_ID."
  type        = string
  default     = ""
}

variable "deliveries_prefix" {
  description = "Key prefix under which a new object starts a job (e.g. \"deliveries/\"); objects elsewhere in the bucket start nothing. Each dataset's `from` in shopscribe.toml should be s3://BUCKET/PREFIX…"
  type        = string
  default     = "deliveries/"
}

variable "site_bucket_name" {
  description = "Name of the bucket the site is published to (publish.url = s3://BUCKET/site). Empty: NAME-site-ACCOUNT_ID."
  type        = string
  default     = ""
}

variable "site_prefix" {
  description = "Key prefix of the published site in the site bucket; SHOPSCRIBE_PUBLISH_URL is s3://SITE_BUCKET/SITE_PREFIX."
  type        = string
  default     = "site"
}

variable "enable_cloudfront" {
  description = "Serve the site bucket through a CloudFront distribution (origin access control; the bucket stays private)."
  type        = bool
  default     = false
}

variable "cloudfront_price_class" {
  description = "CloudFront price class when enable_cloudfront is true."
  type        = string
  default     = "PriceClass_100"
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets (for throw-away environments only: deliveries are history)."
  type        = bool
  default     = false
}

variable "vpc_id" {
  description = "VPC of the Fargate tasks (for the module's security group)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the Fargate tasks: private subnets with a NAT gateway (or VPC endpoints for S3, ECR, Secrets Manager and CloudWatch Logs), or public subnets with assign_public_ip = true. They must reach the PostgreSQL store and the LLM provider."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "security_group_ids" {
  description = "Security groups of the Fargate tasks. Empty: the module creates one that allows no inbound traffic and HTTPS (443) and PostgreSQL (5432) outbound."
  type        = list(string)
  default     = []
}

variable "assign_public_ip" {
  description = "Give the Fargate tasks a public IP (only for public subnets without a NAT gateway)."
  type        = bool
  default     = false
}

variable "max_vcpus" {
  description = "Upper bound of the Fargate compute environment's vCPUs (all running jobs together): caps the cost and the number of concurrent workers."
  type        = number
  default     = 16
}

variable "use_fargate_spot" {
  description = "Use FARGATE_SPOT capacity (about 70 % cheaper; a reclaimed task is retried by Batch, and a worker's tasks return to the queue)."
  type        = bool
  default     = false
}

variable "job_vcpu" {
  description = "vCPUs of one job (a Fargate size: 0.25, 0.5, 1, 2, 4, 8 or 16)."
  type        = number
  default     = 1
}

variable "job_memory_mib" {
  description = "Memory of one job in MiB (valid for job_vcpu on Fargate: 2048-8192 for 1 vCPU)."
  type        = number
  default     = 2048
}

variable "job_timeout_seconds" {
  description = "A job attempt running longer than this is stopped (a stopped run is marked abandoned and the next run continues it)."
  type        = number
  default     = 14400
}

variable "job_attempts" {
  description = "Attempts per Batch job (1-10): an infrastructure failure (the task could not start, Spot reclaimed it) is retried; a shopscribe failure (exit 1 or 2) is not."
  type        = number
  default     = 2
}

variable "default_job" {
  description = "The shopscribe job ([jobs.NAME]) the `run`, `enqueue` and `worker` job definitions and the schedule use unless a submission overrides the `job` parameter."
  type        = string
  default     = "domain_summaries"
}

variable "worker_array_size" {
  description = "Default number of `shopscribe worker` processes of a distributed run (the array job's size, 2-10000)."
  type        = number
  default     = 4

  validation {
    condition     = var.worker_array_size >= 2 && var.worker_array_size <= 10000
    error_message = "An AWS Batch array job has 2 to 10000 children."
  }
}

variable "schedule_expression" {
  description = "EventBridge Scheduler expression for a periodic refresh (`shopscribe run default_job`), e.g. \"cron(0 4 * * ? *)\" or \"rate(6 hours)\". Empty: no schedule."
  type        = string
  default     = ""
}

variable "schedule_timezone" {
  description = "Time zone of schedule_expression."
  type        = string
  default     = "UTC"
}

variable "log_retention_days" {
  description = "Retention of the jobs' CloudWatch log group, in days."
  type        = number
  default     = 365
}

variable "ecr_keep_images" {
  description = "How many tagged images the ECR lifecycle policy keeps (older ones are expired; untagged ones after 7 days)."
  type        = number
  default     = 30
}

variable "llm_api_key_env" {
  description = "Environment variable the LLM key is injected as (the project's llm.api_key_env)."
  type        = string
  default     = "OPENAI_API_KEY"
}

variable "extra_environment" {
  description = "Extra plain (non-secret) environment variables of every job, e.g. { SHOPSCRIBE_LLM_MODEL = \"gpt-4o-mini\", TELEGRAM_CHAT_ID = \"-100…\" }."
  type        = map(string)
  default     = {}
}

variable "kms_key_arn" {
  description = "KMS key for the secrets, the log group, the buckets and the ECR repository. Empty: the module creates one (rotation on)."
  type        = string
  default     = ""
}

variable "enable_telegram" {
  description = "Create the Telegram bot token secret and inject it as TELEGRAM_BOT_TOKEN (set notify.telegram_chat_id in the project or TELEGRAM_CHAT_ID in extra_environment). Every secret the jobs reference must have a value before a job starts."
  type        = bool
  default     = false
}
