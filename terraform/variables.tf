# Inputs of the face-blur deployment. Only vpc_id and subnet_ids have no default; see
# terraform.tfvars.example and README.md for a worked example.

variable "region" {
  description = "AWS region for every resource (frames, results and logs stay in it)."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Name of this deployment: prefix of every resource name (bucket names add the account id and region)."
  type        = string
  default     = "face-blur"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2-20 characters of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags for every resource (Project and Deployment are always set)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------- images

variable "inference_image_tag" {
  description = "Tag of the inference image in the 'inference' ECR repository (tags are immutable: push a new tag for each build)."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.inference_image_tag))
    error_message = "inference_image_tag must be a valid image tag (letters, digits, '.', '_', '-'; at most 128)."
  }
}

variable "postprocess_image_tag" {
  description = "Tag of the post-processing image in the 'postprocess' ECR repository, used by the Lambda function and the Batch job definition."
  type        = string
  default     = "0.1.0"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", var.postprocess_image_tag))
    error_message = "postprocess_image_tag must be a valid image tag (letters, digits, '.', '_', '-'; at most 128)."
  }
}

variable "ecr_repository_prefix" {
  description = "Prefix of the two ECR repository names (\"\" gives inference and postprocess; \"team/\" gives team/inference ...), for a second deployment in the same account and region."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z0-9]+([._-][a-z0-9]+)*/)*$", var.ecr_repository_prefix))
    error_message = "ecr_repository_prefix must be empty or lower-case path segments each ending in '/', such as \"face-blur/\"."
  }
}

variable "ecr_keep_images" {
  description = "Images kept per ECR repository; older ones are expired by the lifecycle policy."
  type        = number
  default     = 10

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "ecr_keep_images must be a whole number from 1 to 1000."
  }
}

# ---------------------------------------------------------------- data retention

variable "results_expiration_days" {
  description = "Days after which transform results (results/, the .out files holding face embeddings: biometric data) are deleted, old versions included."
  type        = number
  default     = 7

  validation {
    condition     = var.results_expiration_days >= 1 && var.results_expiration_days <= 3650 && floor(var.results_expiration_days) == var.results_expiration_days
    error_message = "results_expiration_days must be a whole number from 1 to 3650."
  }
}

variable "input_expiration_days" {
  description = "Days after which uploaded frames, reference photos and audio (input/, audio/) are deleted, old versions included."
  type        = number
  default     = 30

  validation {
    condition     = var.input_expiration_days >= 1 && var.input_expiration_days <= 3650 && floor(var.input_expiration_days) == var.input_expiration_days
    error_message = "input_expiration_days must be a whole number from 1 to 3650."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten or deleted object versions are removed from the data bucket."
  type        = number
  default     = 1

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 365 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number from 1 to 365."
  }
}

variable "access_log_expiration_days" {
  description = "Days after which S3 server access logs are deleted from the log bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.access_log_expiration_days >= 1 && var.access_log_expiration_days <= 3650 && floor(var.access_log_expiration_days) == var.access_log_expiration_days
    error_message = "access_log_expiration_days must be a whole number from 1 to 3650."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (Lambda, Batch, SageMaker transform jobs), in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

# ---------------------------------------------------------------- inference (SageMaker Batch Transform)

variable "transform_job_name_prefix" {
  description = "Prefix of the transform job names of this deployment: the EventBridge rules match it and the start script uses it."
  type        = string
  default     = "face-blur-"

  validation {
    condition     = can(regex("^[a-z0-9](-*[a-z0-9])*-?$", var.transform_job_name_prefix)) && length(var.transform_job_name_prefix) <= 40
    error_message = "transform_job_name_prefix must be at most 40 lower-case letters, digits and '-', starting with a letter or digit (the rest of SageMaker's 63 characters holds the job id and a 13-character timestamp)."
  }
}

variable "transform_instance_type" {
  description = "Instance type of the transform jobs (GPU types such as ml.g4dn.xlarge run the models on CUDA, CPU types on the CPU)."
  type        = string
  default     = "ml.g4dn.xlarge"

  validation {
    condition     = can(regex("^ml\\.[a-z0-9]+\\.[a-z0-9]+$", var.transform_instance_type))
    error_message = "transform_instance_type must be a SageMaker instance type such as ml.g4dn.xlarge or ml.c5.2xlarge."
  }
}

variable "transform_instance_count" {
  description = "Instances per transform job (frames are spread over them object by object)."
  type        = number
  default     = 1

  validation {
    condition     = var.transform_instance_count >= 1 && var.transform_instance_count <= 100 && floor(var.transform_instance_count) == var.transform_instance_count
    error_message = "transform_instance_count must be a whole number from 1 to 100."
  }
}

variable "transform_max_concurrent_transforms" {
  description = "MaxConcurrentTransforms: requests in flight to each instance's container."
  type        = number
  default     = 4

  validation {
    condition     = var.transform_max_concurrent_transforms >= 1 && var.transform_max_concurrent_transforms <= 64 && floor(var.transform_max_concurrent_transforms) == var.transform_max_concurrent_transforms
    error_message = "transform_max_concurrent_transforms must be a whole number from 1 to 64."
  }
}

variable "transform_max_payload_mb" {
  description = "MaxPayloadInMB: largest frame or photo (one object per request) the job sends to the container."
  type        = number
  default     = 25

  validation {
    condition     = var.transform_max_payload_mb >= 1 && var.transform_max_payload_mb <= 100 && floor(var.transform_max_payload_mb) == var.transform_max_payload_mb
    error_message = "transform_max_payload_mb must be a whole number from 1 to 100."
  }
}

variable "inference_model_server_workers" {
  description = "SAGEMAKER_MODEL_SERVER_WORKERS: model server worker processes per instance (each loads the models once); 0 = the container's rule (one per GPU, else as many as memory allows)."
  type        = number
  default     = 0

  validation {
    condition     = var.inference_model_server_workers >= 0 && var.inference_model_server_workers <= 64 && floor(var.inference_model_server_workers) == var.inference_model_server_workers
    error_message = "inference_model_server_workers must be a whole number from 0 (automatic) to 64."
  }
}

variable "inference_model_server_timeout" {
  description = "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS: seconds one request (and one worker's model load) may take in the model server."
  type        = number
  default     = 120

  validation {
    condition     = var.inference_model_server_timeout >= 10 && var.inference_model_server_timeout <= 3600 && floor(var.inference_model_server_timeout) == var.inference_model_server_timeout
    error_message = "inference_model_server_timeout must be a whole number of seconds from 10 to 3600."
  }
}

variable "inference_device" {
  description = "FACE_BLUR_DEVICE: auto (GPU when the instance has one), cpu or gpu."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "cpu", "gpu"], var.inference_device)
    error_message = "inference_device must be auto, cpu or gpu."
  }
}

variable "inference_gpu_fallback" {
  description = "FACE_BLUR_GPU_FALLBACK: fall back to the CPU when the GPU cannot be used (false: fail instead)."
  type        = bool
  default     = true
}

variable "inference_detector" {
  description = "FACE_BLUR_DETECTOR: face detector of the container (empty: the image's default)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z0-9][a-z0-9_-]*)?$", var.inference_detector))
    error_message = "inference_detector must be empty or a detector name (lower-case letters, digits, '_', '-')."
  }
}

variable "inference_embedder" {
  description = "FACE_BLUR_EMBEDDER: face embedder of the container (empty: the image's default)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z0-9][a-z0-9_-]*)?$", var.inference_embedder))
    error_message = "inference_embedder must be empty or an embedder name (lower-case letters, digits, '_', '-')."
  }
}

variable "manage_sagemaker_log_group" {
  description = "Create /aws/sagemaker/TransformJobs with retention and KMS. Set false if the account already has it (SageMaker's name is fixed per account and region)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------- post-processing (Lambda)

variable "lambda_memory_mb" {
  description = "Memory of the post-processing Lambda function in MB (CPU share grows with it)."
  type        = number
  default     = 4096

  validation {
    condition     = var.lambda_memory_mb >= 512 && var.lambda_memory_mb <= 10240 && floor(var.lambda_memory_mb) == var.lambda_memory_mb
    error_message = "lambda_memory_mb must be a whole number from 512 to 10240."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of the post-processing Lambda function in seconds (longer videos go to AWS Batch)."
  type        = number
  default     = 900

  validation {
    condition     = var.lambda_timeout_seconds >= 60 && var.lambda_timeout_seconds <= 900 && floor(var.lambda_timeout_seconds) == var.lambda_timeout_seconds
    error_message = "lambda_timeout_seconds must be a whole number from 60 to 900."
  }
}

variable "lambda_ephemeral_storage_mb" {
  description = "Ephemeral /tmp storage of the post-processing Lambda function in MB."
  type        = number
  default     = 4096

  validation {
    condition     = var.lambda_ephemeral_storage_mb >= 512 && var.lambda_ephemeral_storage_mb <= 10240 && floor(var.lambda_ephemeral_storage_mb) == var.lambda_ephemeral_storage_mb
    error_message = "lambda_ephemeral_storage_mb must be a whole number from 512 to 10240."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of the post-processing Lambda function: at most this many jobs are post-processed at once."
  type        = number
  default     = 4

  validation {
    condition     = var.lambda_reserved_concurrency >= 1 && var.lambda_reserved_concurrency <= 1000 && floor(var.lambda_reserved_concurrency) == var.lambda_reserved_concurrency
    error_message = "lambda_reserved_concurrency must be a whole number from 1 to 1000."
  }
}

variable "lambda_max_frames" {
  description = "FACE_BLUR_LAMBDA_MAX_FRAMES: videos with more frames than this are post-processed on AWS Batch instead of inside the Lambda function."
  type        = number
  default     = 600

  validation {
    condition     = var.lambda_max_frames >= 0 && floor(var.lambda_max_frames) == var.lambda_max_frames
    error_message = "lambda_max_frames must be a whole number, 0 or more (0: always use AWS Batch)."
  }
}

variable "notification_email" {
  description = "E-mail address subscribed to the notification topic (failed or stopped jobs, dead letters); empty: no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.notification_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.notification_email))
    error_message = "notification_email must be empty or an e-mail address."
  }
}

# ---------------------------------------------------------------- post-processing (AWS Batch)

variable "batch_compute_type" {
  description = "AWS Batch capacity: fargate, fargate-spot (Fargate Spot first, Fargate on-demand as fallback) or ec2-spot (EC2 Spot first, EC2 on-demand as fallback)."
  type        = string
  default     = "fargate"

  validation {
    condition     = contains(["fargate", "fargate-spot", "ec2-spot"], var.batch_compute_type)
    error_message = "batch_compute_type must be fargate, fargate-spot or ec2-spot."
  }
}

variable "batch_max_vcpus" {
  description = "Most vCPUs each Batch compute environment runs at once (bounds cost and parallel rendering)."
  type        = number
  default     = 32

  validation {
    condition     = var.batch_max_vcpus >= 1 && var.batch_max_vcpus <= 4096 && floor(var.batch_max_vcpus) == var.batch_max_vcpus
    error_message = "batch_max_vcpus must be a whole number from 1 to 4096."
  }
}

variable "batch_ec2_instance_types" {
  description = "Instance types or families for batch_compute_type = ec2-spot."
  type        = list(string)
  default     = ["c6i", "c5", "m6i"]

  validation {
    condition     = length(var.batch_ec2_instance_types) >= 1 && alltrue([for t in var.batch_ec2_instance_types : can(regex("^[a-z0-9]+(\\.[a-z0-9]+)?$", t))])
    error_message = "batch_ec2_instance_types must list instance types (c6i.xlarge) or families (c6i)."
  }
}

variable "batch_job_vcpus" {
  description = "vCPUs of one post-processing Batch job (Fargate accepts 0.25, 0.5, 1, 2, 4, 8 and 16)."
  type        = number
  default     = 2

  validation {
    condition     = contains([0.25, 0.5, 1, 2, 4, 8, 16], var.batch_job_vcpus)
    error_message = "batch_job_vcpus must be one of 0.25, 0.5, 1, 2, 4, 8, 16."
  }
}

variable "batch_job_memory_mb" {
  description = "Memory of one post-processing Batch job in MiB (on Fargate it must suit batch_job_vcpus: 2 vCPUs take 4096-16384)."
  type        = number
  default     = 8192

  validation {
    condition     = var.batch_job_memory_mb >= 512 && var.batch_job_memory_mb <= 122880 && floor(var.batch_job_memory_mb) == var.batch_job_memory_mb
    error_message = "batch_job_memory_mb must be a whole number from 512 to 122880."
  }
}

variable "batch_job_ephemeral_storage_gib" {
  description = "Ephemeral storage of one Fargate Batch job in GiB (ignored on EC2)."
  type        = number
  default     = 50

  validation {
    condition     = var.batch_job_ephemeral_storage_gib >= 21 && var.batch_job_ephemeral_storage_gib <= 200 && floor(var.batch_job_ephemeral_storage_gib) == var.batch_job_ephemeral_storage_gib
    error_message = "batch_job_ephemeral_storage_gib must be a whole number from 21 to 200."
  }
}

variable "batch_job_timeout_seconds" {
  description = "A Batch job attempt running longer than this is stopped."
  type        = number
  default     = 14400

  validation {
    condition     = var.batch_job_timeout_seconds >= 60 && floor(var.batch_job_timeout_seconds) == var.batch_job_timeout_seconds
    error_message = "batch_job_timeout_seconds must be a whole number of seconds, at least 60."
  }
}

variable "batch_job_attempts" {
  description = "Attempts per Batch job: retries happen only when the host went away (Spot reclaim, instance failure)."
  type        = number
  default     = 3

  validation {
    condition     = var.batch_job_attempts >= 1 && var.batch_job_attempts <= 10 && floor(var.batch_job_attempts) == var.batch_job_attempts
    error_message = "batch_job_attempts must be a whole number from 1 to 10."
  }
}

variable "batch_render_array_size" {
  description = "FACE_BLUR_RENDER_ARRAY_SIZE: render array jobs a long video is split into (each renders a share of the frames)."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_render_array_size >= 1 && var.batch_render_array_size <= 10000 && floor(var.batch_render_array_size) == var.batch_render_array_size
    error_message = "batch_render_array_size must be a whole number from 1 to 10000 (1: no array job)."
  }
}

# ---------------------------------------------------------------- network (AWS Batch only)

variable "vpc_id" {
  description = "VPC of the Batch jobs (the account's default VPC will do, with batch_assign_public_ip = true)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be a VPC id such as vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets of the Batch jobs, in vpc_id. They must reach S3, ECR and CloudWatch Logs: through a NAT gateway, VPC endpoints, or a public IP (batch_assign_public_ip)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]{8,17}$", s))])
    error_message = "subnet_ids must list at least one subnet id such as subnet-0123456789abcdef0."
  }
}

variable "batch_assign_public_ip" {
  description = "Give Fargate jobs a public IP (needed in public subnets without NAT, such as the default VPC's); inbound traffic stays blocked by the security group."
  type        = bool
  default     = false
}
