// SPDX-License-Identifier: GPL-2.0-only
/*
 * smpark: park every CPU but the requesting one in a WFI loop with interrupts
 * masked, so a VMM can capture a consistent multi-vCPU snapshot, and release
 * them again. Controlled through /sys/kernel/smpark/ (see README.md).
 *
 * Each parked CPU runs a SCHED_FIFO kthread bound to it. The kthread masks
 * interrupts, counts itself in, and waits in WFI until the release flag is
 * set. Release sets the flag and sends every other CPU a synchronous IPI:
 * the IPI makes WFI return even with interrupts masked, and its completion
 * proves the CPU has left the loop and unmasked interrupts. The kthreads are
 * then stopped, so no module code runs once release returns; that is what
 * makes unloading safe in any state.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/irqflags.h>
#include <linux/kobject.h>
#include <linux/kstrtox.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/smp.h>
#include <linux/sysfs.h>
#include <linux/timekeeping.h>

static unsigned int park_timeout_ms = 1000;
module_param(park_timeout_ms, uint, 0644);
MODULE_PARM_DESC(park_timeout_ms,
		 "How long a park request waits for every other CPU to park before it releases them and fails with ETIMEDOUT (default 1000)");

static unsigned int auto_release_ms;
module_param(auto_release_ms, uint, 0644);
MODULE_PARM_DESC(auto_release_ms,
		 "Parked CPUs release themselves after this long, a safety net if the releaser never runs (0 = never, the default)");

/* Serialises park, release and unload; guards the session state below. */
static DEFINE_MUTEX(smpark_lock);
/* A park session exists: its kthreads are alive and must be stopped. */
static bool session_active;
/* The parker kthread of each parked CPU, NULL elsewhere. */
static DEFINE_PER_CPU(struct task_struct *, parker);

/* Written by the releaser (or an expiring parker), read by every parker. */
static bool release_flag;
/* mono_fast ns at which parkers release themselves; 0 = never. */
static u64 auto_release_at;
/* How many CPUs are inside the parking loop right now. */
static atomic_t parked_count = ATOMIC_INIT(0);

static struct kobject *smpark_kobj;

static inline void smpark_wait_for_interrupt(void)
{
#ifdef CONFIG_ARM64
	/* Returns on any pending interrupt, masked or not: the IPI of release. */
	wfi();
#else
	/* Other architectures only matter for compile tests. */
	cpu_relax();
#endif
}

static int parker_fn(void *unused)
{
	unsigned long flags;

	local_irq_save(flags);
	atomic_inc(&parked_count);
	/* Pairs with smp_store_release() in smpark_release_locked(). */
	while (!smp_load_acquire(&release_flag)) {
		u64 deadline = READ_ONCE(auto_release_at);

		/* ktime_get_mono_fast_ns() is safe with interrupts masked. */
		if (deadline && ktime_get_mono_fast_ns() >= deadline) {
			/* Release the other parkers too; pairs with the loop's acquire. */
			smp_store_release(&release_flag, true);
			break;
		}
		smpark_wait_for_interrupt();
	}
	atomic_dec(&parked_count);
	local_irq_restore(flags);

	/* Sleep until reaped, so kthread_stop() always finds a live thread. */
	set_current_state(TASK_INTERRUPTIBLE);
	while (!kthread_should_stop()) {
		schedule();
		set_current_state(TASK_INTERRUPTIBLE);
	}
	__set_current_state(TASK_RUNNING);
	return 0;
}

/* Ends the session: every parked CPU leaves the loop, every parker exits. */
static void smpark_release_locked(void)
{
	unsigned int cpu;

	if (!session_active)
		return;
	/* Pairs with the parkers' smp_load_acquire(): they see the flag last. */
	smp_store_release(&release_flag, true);
	/*
	 * A synchronous IPI to every other CPU: it wakes WFI, and it completes
	 * only once each parked CPU has left the loop and unmasked interrupts.
	 */
	kick_all_cpus_sync();
	for_each_possible_cpu(cpu) {
		struct task_struct *task = per_cpu(parker, cpu);

		if (!task)
			continue;
		/* Unwoken parkers exit without running parker_fn(). */
		kthread_stop(task);
		per_cpu(parker, cpu) = NULL;
	}
	WRITE_ONCE(session_active, false);
}

/* True while a session holds CPUs in the loop (not released or expired). */
static bool smpark_is_parked(void)
{
	/* Pairs with the release stores: a released session reads as not parked. */
	return READ_ONCE(session_active) && !smp_load_acquire(&release_flag);
}

/* Waits, without sleeping, until @want CPUs are parked or the timeout ends. */
static int smpark_wait_parked(unsigned int want)
{
	ktime_t deadline = ktime_add_ms(ktime_get(), READ_ONCE(park_timeout_ms));
	int err = 0;

	/*
	 * Not sleeping keeps this CPU ours: a task scheduled here now could
	 * spin in a synchronous cross-CPU call to a parked CPU and never let
	 * us run again. Interrupts stay enabled so such calls aimed at us are
	 * served.
	 */
	preempt_disable();
	while (atomic_read(&parked_count) < want) {
		if (ktime_after(ktime_get(), deadline)) {
			err = -ETIMEDOUT;
			break;
		}
		cpu_relax();
	}
	preempt_enable();
	return err;
}

static int smpark_park_locked(void)
{
	unsigned int self, cpu, want = 0;
	unsigned int ms = READ_ONCE(auto_release_ms);
	int err = 0;

	if (smpark_is_parked())
		return -EBUSY;
	/* A session that expired by itself still has parkers to reap. */
	smpark_release_locked();

	/* The requesting CPU is the one left running: stay on it throughout. */
	migrate_disable();
	self = smp_processor_id();
	WRITE_ONCE(release_flag, false);
	atomic_set(&parked_count, 0);
	WRITE_ONCE(auto_release_at,
		   ms ? ktime_get_mono_fast_ns() + (u64)ms * NSEC_PER_MSEC : 0);
	WRITE_ONCE(session_active, true);

	cpus_read_lock();
	for_each_online_cpu(cpu) {
		struct task_struct *task;

		if (cpu == self)
			continue;
		task = kthread_create_on_cpu(parker_fn, NULL, cpu, "smpark/%u");
		if (IS_ERR(task)) {
			err = PTR_ERR(task);
			pr_err("cannot create the parker of CPU %u: %d\n", cpu, err);
			break;
		}
		/* Above every normal task, so it runs as soon as the CPU reschedules. */
		sched_set_fifo(task);
		per_cpu(parker, cpu) = task;
		want++;
	}
	cpus_read_unlock();

	if (!err) {
		for_each_possible_cpu(cpu) {
			if (per_cpu(parker, cpu))
				wake_up_process(per_cpu(parker, cpu));
		}
		err = smpark_wait_parked(want);
		if (err)
			pr_warn("only %d of %u CPUs parked within %u ms; released them\n",
				atomic_read(&parked_count), want,
				READ_ONCE(park_timeout_ms));
	}
	if (err)
		smpark_release_locked();
	else
		pr_debug("parked %u CPUs; CPU %u keeps running\n", want, self);
	migrate_enable();
	return err;
}

static ssize_t park_show(struct kobject *kobj, struct kobj_attribute *attr,
			 char *buf)
{
	return sysfs_emit(buf, "%d\n", smpark_is_parked() ? 1 : 0);
}

static ssize_t park_store(struct kobject *kobj, struct kobj_attribute *attr,
			  const char *buf, size_t count)
{
	bool park;
	int err;

	err = kstrtobool(buf, &park);
	if (err)
		return err;
	err = mutex_lock_interruptible(&smpark_lock);
	if (err)
		return err;
	if (park)
		err = smpark_park_locked();
	else
		smpark_release_locked();
	mutex_unlock(&smpark_lock);
	return err ? err : count;
}

static ssize_t parked_show(struct kobject *kobj, struct kobj_attribute *attr,
			   char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&parked_count));
}

static ssize_t online_show(struct kobject *kobj, struct kobj_attribute *attr,
			   char *buf)
{
	return sysfs_emit(buf, "%u\n", num_online_cpus());
}

static struct kobj_attribute park_attr = __ATTR_RW_MODE(park, 0600);
static struct kobj_attribute parked_attr = __ATTR_RO(parked);
static struct kobj_attribute online_attr = __ATTR_RO(online);

static struct attribute *smpark_attrs[] = {
	&park_attr.attr,
	&parked_attr.attr,
	&online_attr.attr,
	NULL,
};

static const struct attribute_group smpark_group = {
	.attrs = smpark_attrs,
};

static int __init smpark_init(void)
{
	int err;

	smpark_kobj = kobject_create_and_add("smpark", kernel_kobj);
	if (!smpark_kobj)
		return -ENOMEM;
	err = sysfs_create_group(smpark_kobj, &smpark_group);
	if (err)
		kobject_put(smpark_kobj);
	return err;
}

static void __exit smpark_exit(void)
{
	/* Removing the files first waits for writers in progress and stops new ones. */
	sysfs_remove_group(smpark_kobj, &smpark_group);
	kobject_put(smpark_kobj);
	mutex_lock(&smpark_lock);
	smpark_release_locked();
	mutex_unlock(&smpark_lock);
}

module_init(smpark_init);
module_exit(smpark_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Park all other CPUs in a WFI loop for multi-vCPU snapshots");
MODULE_AUTHOR("meta-supermachine");
