// Numbers, times and names as people read them.

export const LOCAL = ".local";

export function placeName(name) {
  return name === LOCAL ? "This device" : name;
}

export function bytes(value) {
  if (value === null || value === undefined) return "";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let n = value;
  let unit = 0;
  while (n >= 1000 && unit < units.length - 1) {
    n /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${n} bytes` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[unit]}`;
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export function dateTime(iso) {
  return iso ? dateTimeFormat.format(new Date(iso)) : "";
}

export function relative(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"], [4.35, "week"], [12, "month"], [Infinity, "year"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relativeFormat.format(Math.round(value), unit);
    value /= size;
  }
  return dateTime(iso);
}

export function when(iso) {
  return iso ? `${relative(iso)} (${dateTime(iso)})` : "";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return "under a second";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function rate(bytesPerSecond) {
  return bytesPerSecond ? `${bytes(bytesPerSecond)}/s` : "";
}

const STAGES = {
  starting: "Starting",
  requesting: "Asking Home Assistant for a backup",
  supervisor_backup: "Home Assistant is making the backup",
  recording: "Recording the backup",
  copying: "Copying to your locations",
  "copying again": "Copying again where it failed",
  checking: "Checking the copies",
  reading: "Reading the copy back",
  pruning: "Removing old backups",
  restoring: "Restoring",
  uploading: "Handing the backup to Home Assistant",
};

export function stageName(stage) {
  if (!stage) return "";
  if (STAGES[stage]) return STAGES[stage];
  if (stage.startsWith("supervisor:")) {
    return `Home Assistant is making the backup: ${humanize(stage.slice("supervisor:".length))}`;
  }
  return humanize(stage);
}

export function humanize(text) {
  const words = String(text).replaceAll("_", " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const KINDS = {
  backup: "Backup", mirror: "Copy of another backup", verify: "Check", drill: "Restore test",
  prune: "Clean-up", restore: "Restore",
};

export function runKind(kind) {
  return KINDS[kind] ?? humanize(kind);
}

const TRIGGERS = { schedule: "scheduled", "catch-up": "missed schedule", panel: "started here", demo: "demo",
  command: "automation", check: "routine check", retention: "retention" };

export function triggerName(trigger) {
  return TRIGGERS[trigger] ?? trigger;
}

const LOCATION_KINDS = { folder: "Folder", s3: "S3 storage", webdav: "WebDAV", sftp: "SFTP server", smb: "Windows/Samba share",
  supervisor: "Home Assistant's backup folder", "network storage": "Network storage (Home Assistant)", removed: "No longer set up" };

export function locationKind(kind, name = null) {
  // The Supervisor keeps both its own folder and network storage: the name tells them apart.
  if (kind === "supervisor" && name !== null && name !== LOCAL) return LOCATION_KINDS["network storage"];
  return LOCATION_KINDS[kind] ?? humanize(kind);
}
