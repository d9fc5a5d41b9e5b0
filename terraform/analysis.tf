# Adaptive analysis on AWS Batch (scripts/start_job.py --analysis adaptive): one job, an array job
# of one child per segment of frames when there are several, from the job definition below, which
# runs the INFERENCE image (the models of the SageMaker model) as
#   python -m faceblur.segments --options <s3 uri of face-blur-options.json> --segment-frames N
# (parameters "options" and "segment_frames"; AWS_BATCH_JOB_ARRAY_INDEX picks the segment). Each child
# writes its frames' <key>.out results under results/<job>/, where the transform job would; the end
# of the parent (events.tf: analysis_ended) starts the post-processing Lambda function as a
# completed transform job does.
#
# Capacity is EC2 (the inference image is large and the analysis wants whole cores):
#   ec2       EC2 on-demand
#   ec2-spot  EC2 Spot (capacity-optimised), then EC2 on-demand
# in analysis_instance_types (default the c6i family: CPU). GPU: analysis_job_gpus = 1 with GPU
# instance types (g4dn, g5) and an inference image built with onnxruntime-gpu; the instances then
# run the ECS GPU AMI. Encrypted root volumes, IMDSv2 only, the Batch security group (no inbound,
# HTTPS out) and subnets. The instances need a route to S3, ECR and CloudWatch Logs: in the default
# VPC's public subnets, a public IP from the subnet's "auto-assign public IPv4" setting.

variable "analysis_compute_type" {
  description = "Capacity of the adaptive analysis jobs: ec2 (on-demand) or ec2-spot (EC2 Spot first, on-demand as fallback)."
  type        = string
  default     = "ec2"

  validation {
    condition     = contains(["ec2", "ec2-spot"], var.analysis_compute_type)
    error_message = "analysis_compute_type must be ec2 or ec2-spot."
  }
}

variable "analysis_instance_types" {
  description = "Instance types or families of the analysis jobs (CPU: c6i, c7i; GPU with analysis_job_gpus > 0: g4dn, g5)."
  type        = list(string)
  default     = ["c6i"]

  validation {
    condition     = length(var.analysis_instance_types) >= 1 && alltrue([for t in var.analysis_instance_types : can(regex("^[a-z0-9]+(\\.[a-z0-9]+)?$", t))])
    error_message = "analysis_instance_types must list instance types (c6i.2xlarge) or families (c6i)."
  }
}

variable "analysis_max_vcpus" {
  description = "Most vCPUs each analysis compute environment runs at once (bounds cost and how many segments run in parallel)."
  type        = number
  default     = 64

  validation {
    condition     = var.analysis_max_vcpus >= 1 && var.analysis_max_vcpus <= 4096 && floor(var.analysis_max_vcpus) == var.analysis_max_vcpus
    error_message = "analysis_max_vcpus must be a whole number from 1 to 4096."
  }
}

variable "analysis_job_vcpus" {
  description = "vCPUs of one analysis job (one segment)."
  type        = number
  default     = 4

  validation {
    condition     = var.analysis_job_vcpus >= 1 && var.analysis_job_vcpus <= 192 && floor(var.analysis_job_vcpus) == var.analysis_job_vcpus
    error_message = "analysis_job_vcpus must be a whole number from 1 to 192."
  }
}

variable "analysis_job_memory_mb" {
  description = "Memory of one analysis job in MiB (it must fit in what ECS leaves of an instance's memory: 8192 places on c6i.2xlarge, not c6i.xlarge)."
  type        = number
  default     = 8192

  validation {
    condition     = var.analysis_job_memory_mb >= 1024 && var.analysis_job_memory_mb <= 786432 && floor(var.analysis_job_memory_mb) == var.analysis_job_memory_mb
    error_message = "analysis_job_memory_mb must be a whole number from 1024 to 786432."
  }
}

variable "analysis_job_gpus" {
  description = "GPUs of one analysis job: 0 (CPU) or more, with GPU analysis_instance_types and an inference image built with onnxruntime-gpu."
  type        = number
  default     = 0

  validation {
    condition     = var.analysis_job_gpus >= 0 && var.analysis_job_gpus <= 8 && floor(var.analysis_job_gpus) == var.analysis_job_gpus
    error_message = "analysis_job_gpus must be a whole number from 0 to 8."
  }
}

variable "analysis_job_timeout_seconds" {
  description = "An analysis job attempt (one segment) running longer than this is stopped."
  type        = number
  default     = 14400

  validation {
    condition     = var.analysis_job_timeout_seconds >= 60 && floor(var.analysis_job_timeout_seconds) == var.analysis_job_timeout_seconds
    error_message = "analysis_job_timeout_seconds must be a whole number of seconds, at least 60."
  }
}

variable "analysis_job_attempts" {
  description = "Attempts per analysis job: retries happen only when the host went away (Spot reclaim, instance failure)."
  type        = number
  default     = 2

  validation {
    condition     = var.analysis_job_attempts >= 1 && var.analysis_job_attempts <= 10 && floor(var.analysis_job_attempts) == var.analysis_job_attempts
    error_message = "analysis_job_attempts must be a whole number from 1 to 10."
  }
}

locals {
  analysis_compute_environments = {
    "ec2"      = { analysis-ec2 = { type = "EC2", order = 1 } }
    "ec2-spot" = { analysis-spot = { type = "SPOT", order = 1 }, analysis-ec2 = { type = "EC2", order = 2 } }
  }[var.analysis_compute_type]

  analysis_job_definition_arn = aws_batch_job_definition.analysis.arn_prefix

  # What the SageMaker model's container gets (sagemaker.tf), less the model server's settings, plus
  # the model folder of the image and scratch space on the job's one writable volume.
  analysis_environment = merge(
    {
      FACE_BLUR_MODEL_DIR    = "/opt/ml/model"
      FACE_BLUR_DEVICE       = var.inference_device
      FACE_BLUR_GPU_FALLBACK = var.inference_gpu_fallback ? "true" : "false"
      TMPDIR                 = "/tmp"
      XDG_CACHE_HOME         = "/tmp/.cache"
      AWS_DEFAULT_REGION     = var.region
    },
    var.inference_detector == "" ? {} : { FACE_BLUR_DETECTOR = var.inference_detector },
    var.inference_embedder == "" ? {} : { FACE_BLUR_EMBEDDER = var.inference_embedder },
  )

  analysis_container = {
    image            = local.inference_image_uri
    command          = ["python", "-m", "faceblur.segments", "--options", "Ref::options", "--segment-frames", "Ref::segment_frames"]
    jobRoleArn       = aws_iam_role.analysis_job.arn
    executionRoleArn = aws_iam_role.analysis_execution.arn
    resourceRequirements = concat(
      [
        { type = "VCPU", value = tostring(var.analysis_job_vcpus) },
        { type = "MEMORY", value = tostring(var.analysis_job_memory_mb) },
      ],
      [for gpus in [var.analysis_job_gpus] : { type = "GPU", value = tostring(gpus) } if gpus > 0],
    )
    environment = [for name in sort(keys(local.analysis_environment)) : { name = name, value = local.analysis_environment[name] }]
    # The image's files are read-only; the job writes only to its scratch volume on /tmp.
    readonlyRootFilesystem = true
    privileged             = false
    volumes                = [{ name = "scratch" }]
    mountPoints            = [{ sourceVolume = "scratch", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.analysis.name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = "analysis"
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "analysis" {
  name              = local.analysis_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_launch_template" "analysis" {
  name_prefix = "${var.name}-analysis-"
  description = "face-blur analysis instances: encrypted root volume, IMDSv2 only"

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      encrypted             = true
      volume_type           = "gp3"
      volume_size           = 100
      delete_on_termination = true
    }
  }
}

resource "aws_batch_compute_environment" "analysis" {
  for_each = local.analysis_compute_environments

  compute_environment_name_prefix = "${var.name}-${each.key}-"
  type                            = "MANAGED"
  state                           = "ENABLED"

  compute_resources {
    type                = each.value.type
    max_vcpus           = var.analysis_max_vcpus
    min_vcpus           = 0
    subnets             = var.subnet_ids
    security_group_ids  = [aws_security_group.batch.id]
    allocation_strategy = each.value.type == "SPOT" ? "SPOT_CAPACITY_OPTIMIZED" : "BEST_FIT_PROGRESSIVE"
    instance_type       = var.analysis_instance_types
    instance_role       = aws_iam_instance_profile.analysis_instance.arn

    ec2_configuration {
      image_type = var.analysis_job_gpus > 0 ? "ECS_AL2_NVIDIA" : "ECS_AL2"
    }

    launch_template {
      launch_template_id = aws_launch_template.analysis.id
      version            = aws_launch_template.analysis.latest_version
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "analysis" {
  name     = "${var.name}-analysis"
  state    = "ENABLED"
  priority = 1

  dynamic "compute_environment_order" {
    for_each = local.analysis_compute_environments
    content {
      order               = compute_environment_order.value.order
      compute_environment = aws_batch_compute_environment.analysis[compute_environment_order.key].arn
    }
  }
}

resource "aws_batch_job_definition" "analysis" {
  name                  = "${var.name}-analysis"
  type                  = "container"
  platform_capabilities = ["EC2"]
  propagate_tags        = true
  parameters            = { segment_frames = "3000" }
  container_properties  = jsonencode(local.analysis_container)

  # Retry only when the host went away (EC2 Spot reclaim or instance loss: "Host EC2 ..."); a
  # segment that fails on its own fails at once (its array job then ends FAILED).
  retry_strategy {
    attempts = var.analysis_job_attempts
    evaluate_on_exit {
      action           = "RETRY"
      on_status_reason = "Host EC2*"
    }
    evaluate_on_exit {
      action    = "EXIT"
      on_reason = "*"
    }
  }

  timeout {
    attempt_duration_seconds = var.analysis_job_timeout_seconds
  }
}

# ---------------------------------------------------------------- IAM (iam.tf has the other roles)
#   Analysis job role:       read input/ and results/ (frames, reference photos, the run options),
#                            write results/ (the .out files), the key through S3.
#   Analysis execution role: pull the inference image, write the analysis log group.
#   Analysis instance role:  the ECS container agent (AWS's AmazonEC2ContainerServiceforEC2Role).

resource "aws_iam_role" "analysis_job" {
  name               = "${var.name}-analysis-job"
  description        = "face-blur adaptive analysis jobs: read input/ and results/, write results/"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "analysis_job" {
  statement {
    sid       = "ListJobData"
    actions   = ["s3:ListBucket"]
    resources = [local.data_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.prefix.input}*", "${local.prefix.results}*"]
    }
  }

  statement {
    sid     = "ReadFramesReferencePhotosAndRunOptions"
    actions = ["s3:GetObject"]
    resources = [
      "${local.data_bucket_arn}/${local.prefix.input}*",
      "${local.data_bucket_arn}/${local.prefix.results}*",
    ]
  }

  statement {
    sid       = "WriteResults"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${local.data_bucket_arn}/${local.prefix.results}*"]
  }

  statement {
    sid       = "UseTheKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.s3_via_service]
    }
  }
}

resource "aws_iam_role_policy" "analysis_job" {
  name   = "analysis"
  role   = aws_iam_role.analysis_job.id
  policy = data.aws_iam_policy_document.analysis_job.json
}

resource "aws_iam_role" "analysis_execution" {
  name               = "${var.name}-analysis-execution"
  description        = "Starts face-blur analysis containers: pull the inference image, write their logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "analysis_execution" {
  statement {
    sid       = "PullTheInferenceImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [aws_ecr_repository.inference.arn]
  }

  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "WriteJobLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.analysis.arn}:*"]
  }
}

resource "aws_iam_role_policy" "analysis_execution" {
  name   = "start-containers"
  role   = aws_iam_role.analysis_execution.id
  policy = data.aws_iam_policy_document.analysis_execution.json
}

resource "aws_iam_role" "analysis_instance" {
  name               = "${var.name}-analysis-instance"
  description        = "ECS container agent on face-blur analysis EC2 instances"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "analysis_instance" {
  role       = aws_iam_role.analysis_instance.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
}

resource "aws_iam_instance_profile" "analysis_instance" {
  name = "${var.name}-analysis-instance"
  role = aws_iam_role.analysis_instance.name
}
