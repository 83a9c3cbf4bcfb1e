#!/bin/busybox sh
# /init of the corpus guests (scripts/make-vmcores), for both kernels:
#  - the first kernel arms kdump (kexec -p), sets up the scenario from
#    /etc/kpm.env and fires the trigger from an ordinary child process;
#  - the capture kernel (it sees /proc/vmcore) writes the dump, in
#    makedumpfile's flattened format, onto the raw virtio disk /dev/vda and
#    powers off.
# Lines starting "kpm-" are this script's own words in the console log.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp

arg() {  # value of kpm.NAME= on the kernel command line
	sed -n "s/.*kpm\.$1=\([^ ]*\).*/\1/p" /proc/cmdline
}

if grep -q 'kpm\.probe' /proc/cmdline; then
	echo "kpm-probe: userspace reached"
	poweroff -f
fi

if [ -e /proc/vmcore ]; then
	echo "kpm-capture: capture kernel up, /proc/vmcore is $(stat -c %s /proc/vmcore) bytes"
	for m in $(cat /lib/capture-modules/order); do
		insmod /lib/capture-modules/$m.ko || echo "kpm-capture: insmod $m failed"
	done
	n=0
	while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
	fmt=$(arg dump_format)
	level=$(arg dump_level)
	case "$fmt" in
	elf) flag=-E ;;
	*) flag=-c ;;
	esac
	if [ "$fmt" = copy ]; then
		# no makedumpfile filters this kernel (kernels.toml `capture = "copy"`)
		echo "kpm-capture: cat /proc/vmcore > /dev/vda"
		cat /proc/vmcore > /dev/vda
		rc=$?
		sync
		echo "kpm-capture: copy exit $rc"
		poweroff -f
		sleep 5
	fi
	echo "kpm-capture: makedumpfile -F $flag -d $level /proc/vmcore > /dev/vda"
	makedumpfile -F $flag -d "$level" --message-level 4 /proc/vmcore > /dev/vda
	rc=$?
	sync
	echo "kpm-capture: makedumpfile exit $rc"
	poweroff -f
	sleep 5
fi

. /etc/kpm.env
mount -t debugfs debugfs /sys/kernel/debug
if [ -n "$KPM_HOSTNAME" ]; then
	hostname "$KPM_HOSTNAME" && echo "kpm-init: hostname $(hostname)"
fi

# /etc/kpm-arch.env (guest.py, foreign architectures only): KPM_KEXEC_FLAGS, and
# KPM_TEXT_OFFSET (_stext - _text) when kexec-tools needs a `_text` line that the
# kernel's /proc/kallsyms lacks (arm64 6.1): add it on a copy bound over the file.
[ -f /etc/kpm-arch.env ] && . /etc/kpm-arch.env
if [ -n "$KPM_TEXT_OFFSET" ] && ! grep -q ' _text$' /proc/kallsyms; then
	stext=$(sed -n 's/^\([0-9a-f]*\) [Tt] _stext$/\1/p' /proc/kallsyms)
	lo=$(echo "$stext" | cut -c5-16)
	{ printf '%s%012x T _text\n' "$(echo "$stext" | cut -c1-4)" $((0x$lo - KPM_TEXT_OFFSET))
	  cat /proc/kallsyms; } > /tmp/kallsyms
	mount --bind /tmp/kallsyms /proc/kallsyms && echo "kpm-init: _text added to /proc/kallsyms"
fi
console=$(sed -n 's/.*console=\([^ ]*\).*/\1/p' /proc/cmdline)
kexec -p $KPM_KEXEC_FLAGS /boot/vmlinuz --initrd=/boot/capture.cpio \
	--append="console=${console:-ttyS0} irqpoll nr_cpus=1 reset_devices no_timer_check panic=-1 kpm.dump_format=$KPM_FORMAT kpm.dump_level=$KPM_LEVEL"
if [ "$(cat /sys/kernel/kexec_crash_loaded)" != 1 ]; then
	echo "kpm-init: FAILED: the capture kernel is not loaded"
	poweroff -f
fi
echo "kpm-init: capture kernel loaded"

for kv in $KPM_SYSCTLS; do
	key=${kv%%=*}
	echo "${kv#*=}" > /proc/sys/$(echo "$key" | tr . /) && echo "kpm-init: sysctl $kv"
done

for m in $KPM_PRELOAD; do
	insmod /lib/crashpoc/$m.ko || echo "kpm-init: insmod $m failed"
done
if [ "$KPM_LOAD_MODULE" = 1 ]; then
	insmod /lib/crashpoc/crashpoc.ko || echo "kpm-init: insmod crashpoc failed"
fi
# KPM_THREADS: crashpoc starts that many kernel threads sleeping in state S
# (the write returns once they all run), so the dump holds thousands of tasks.
if [ "${KPM_THREADS:-0}" -gt 0 ]; then
	echo "kpm-init: starting $KPM_THREADS sleeping kthreads"
	echo "$KPM_THREADS" > /sys/module/crashpoc/parameters/spawn_threads ||
		echo "kpm-init: FAILED: spawn_threads $KPM_THREADS"
	echo "kpm-init: $(ls -d /proc/[0-9]* | wc -l) tasks"
fi

# KPM_PARAMS: crashpoc parameters written before the trigger (NAME=VALUE ...), each
# write returning once its effect is in place (e.g. park_d: threads asleep in D).
for kv in $KPM_PARAMS; do
	echo "${kv#*=}" > "/sys/module/crashpoc/parameters/${kv%%=*}" &&
		echo "kpm-init: crashpoc $kv" || echo "kpm-init: FAILED: crashpoc $kv"
done

fire() {
	echo "kpm-init: firing $1"
	case "$1" in
	sysrq-c) sh -c 'echo c > /proc/sysrq-trigger' ;;
	# param:NAME=VALUE writes a crashpoc parameter instead (the hang scenarios).
	param:*) kv=${1#param:}
		sh -c "${KPM_TRIGGER_COMM:+echo -n $KPM_TRIGGER_COMM > /proc/self/comm; }echo ${kv#*=} > /sys/module/crashpoc/parameters/${kv%%=*}" ;;
	# KPM_TRIGGER_COMM renames the child (its comm) before it writes the trigger.
	*) sh -c "${KPM_TRIGGER_COMM:+echo -n $KPM_TRIGGER_COMM > /proc/self/comm; }echo $1 > /sys/kernel/debug/crashpoc/trigger" ;;
	esac
}

fire "$KPM_TRIGGER" &
sleep 1
if [ -n "$KPM_FOLLOWUP" ]; then
	sleep 2
	fire "$KPM_FOLLOWUP" &
fi
sleep "$KPM_WAIT"
echo "kpm-init: FAILED: no crash after ${KPM_WAIT}s"
poweroff -f
