# AWS Batch for post-processing long videos: the Lambda function submits a plan job, an array of
# render jobs (AWS_BATCH_JOB_ARRAY_INDEX picks each one's share of frames) and a finalize job,
# all from the job definition below, which runs the postprocess image as
#   python -m postprocess.batch --options <s3 uri of face-blur-options.json> --step plan|render|finalize|all
# (parameters "options" and "step"; "step" defaults to all).
#
# batch_compute_type picks the capacity; the queue tries the compute environments in order:
#   fargate       Fargate on-demand
#   fargate-spot  Fargate Spot, then Fargate on-demand
#   ec2-spot      EC2 Spot (capacity-optimised), then EC2 on-demand; encrypted volumes, IMDSv2 only

locals {
  batch_uses_ec2   = var.batch_compute_type == "ec2-spot"
  batch_is_fargate = !local.batch_uses_ec2

  batch_compute_environments = {
    "fargate"      = { fargate = { type = "FARGATE", order = 1 } }
    "fargate-spot" = { fargate-spot = { type = "FARGATE_SPOT", order = 1 }, fargate = { type = "FARGATE", order = 2 } }
    "ec2-spot"     = { ec2-spot = { type = "SPOT", order = 1 }, ec2 = { type = "EC2", order = 2 } }
  }[var.batch_compute_type]

  batch_job_definition_arn = aws_batch_job_definition.postprocess.arn_prefix

  batch_container_common = {
    image            = local.postprocess_image_uri
    command          = ["python", "-m", "postprocess.batch", "--options", "Ref::options", "--step", "Ref::step"]
    jobRoleArn       = aws_iam_role.batch_job.arn
    executionRoleArn = aws_iam_role.batch_execution.arn
    resourceRequirements = [
      { type = "VCPU", value = tostring(var.batch_job_vcpus) },
      { type = "MEMORY", value = tostring(var.batch_job_memory_mb) },
    ]
    environment = [
      { name = "TMPDIR", value = "/tmp" },
    ]
    # The image's files are read-only; the job writes only to its scratch volume on /tmp.
    readonlyRootFilesystem = true
    privileged             = false
    volumes                = [{ name = "scratch" }]
    mountPoints            = [{ sourceVolume = "scratch", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.batch.name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = "postprocess"
      }
    }
  }

  batch_container_fargate = {
    networkConfiguration         = { assignPublicIp = var.batch_assign_public_ip ? "ENABLED" : "DISABLED" }
    fargatePlatformConfiguration = { platformVersion = "LATEST" }
    ephemeralStorage             = { sizeInGiB = var.batch_job_ephemeral_storage_gib }
  }
}

resource "aws_security_group" "batch" {
  name_prefix = "${var.name}-batch-"
  description = "face-blur Batch jobs: no inbound traffic; outbound HTTPS only (S3, ECR, CloudWatch Logs)"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to AWS APIs (directly, through NAT or through VPC endpoints)"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_launch_template" "batch" {
  count       = local.batch_uses_ec2 ? 1 : 0
  name_prefix = "${var.name}-batch-"
  description = "face-blur Batch instances: encrypted root volume, IMDSv2 only"

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

resource "aws_batch_compute_environment" "postprocess" {
  for_each = local.batch_compute_environments

  compute_environment_name_prefix = "${var.name}-${each.key}-"
  type                            = "MANAGED"
  state                           = "ENABLED"

  compute_resources {
    type                = each.value.type
    max_vcpus           = var.batch_max_vcpus
    min_vcpus           = local.batch_uses_ec2 ? 0 : null
    subnets             = var.subnet_ids
    security_group_ids  = [aws_security_group.batch.id]
    allocation_strategy = local.batch_uses_ec2 ? (each.value.type == "SPOT" ? "SPOT_CAPACITY_OPTIMIZED" : "BEST_FIT_PROGRESSIVE") : null
    instance_type       = local.batch_uses_ec2 ? var.batch_ec2_instance_types : null
    instance_role       = local.batch_uses_ec2 ? aws_iam_instance_profile.batch_instance[0].arn : null

    dynamic "launch_template" {
      for_each = local.batch_uses_ec2 ? [aws_launch_template.batch[0]] : []
      content {
        launch_template_id = launch_template.value.id
        version            = launch_template.value.latest_version
      }
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_batch_job_queue" "postprocess" {
  name     = "${var.name}-postprocess"
  state    = "ENABLED"
  priority = 1

  dynamic "compute_environment_order" {
    for_each = local.batch_compute_environments
    content {
      order               = compute_environment_order.value.order
      compute_environment = aws_batch_compute_environment.postprocess[compute_environment_order.key].arn
    }
  }
}

resource "aws_batch_job_definition" "postprocess" {
  name                  = "${var.name}-postprocess"
  type                  = "container"
  platform_capabilities = [local.batch_is_fargate ? "FARGATE" : "EC2"]
  propagate_tags        = true
  parameters            = { step = "all" }

  # The Fargate-only settings are added by filtering, not by a conditional: a conditional would
  # unify both objects' types and turn the numbers into strings.
  container_properties = jsonencode(merge(
    local.batch_container_common,
    [for extra in [local.batch_container_fargate] : extra if local.batch_is_fargate]...
  ))

  # Retry only when the host went away (EC2 Spot reclaim or instance loss: "Host EC2 ...";
  # Fargate Spot: "Your Spot Task was interrupted."); a job that fails on its own fails at once.
  retry_strategy {
    attempts = var.batch_job_attempts
    evaluate_on_exit {
      action           = "RETRY"
      on_status_reason = "Host EC2*"
    }
    evaluate_on_exit {
      action           = "RETRY"
      on_status_reason = "Your Spot Task was interrupted*"
    }
    evaluate_on_exit {
      action    = "EXIT"
      on_reason = "*"
    }
  }

  timeout {
    attempt_duration_seconds = var.batch_job_timeout_seconds
  }
}
