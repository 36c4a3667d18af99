// SPDX-License-Identifier: GPL-2.0-only
/*
 * smpark: park every CPU but the calling one in a polling loop with interrupts
 * masked, so a VMM can capture a consistent multi-vCPU snapshot, and release
 * them again. The interface is supermachine's (see README.md): the character
 * device /dev/smpark with ioctls _IO('M', 1) = park and _IO('M', 2) = unpark,
 * and /sys/kernel/smpark/state_gpa, the guest-physical address of the page the
 * parked CPUs poll. A 1 stored in that page's first byte, by unpark or by the
 * host writing guest memory directly, releases them.
 *
 * Each parked CPU runs a SCHED_FIFO kthread bound to it, which masks
 * interrupts, counts itself in and spins on the release byte. The byte is
 * read from memory on every pass, so a store by the host (which sends no
 * interrupt) is seen as soon as it lands. The kthreads are stopped on the next
 * unpark, park or unload, so no module code runs once those return.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/cdev.h>
#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/irqflags.h>
#include <linux/kobject.h>
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
#include <linux/workqueue.h>

#define SMPARK_IOC_PARK _IO('M', 1)
#define SMPARK_IOC_UNPARK _IO('M', 2)

static unsigned int park_timeout_ms = 1000;
module_param(park_timeout_ms, uint, 0644);
MODULE_PARM_DESC(park_timeout_ms,
		 "How long a park request waits for every other CPU to park before it releases them and fails with ETIMEDOUT (default 1000)");

static unsigned int auto_release_ms;
module_param(auto_release_ms, uint, 0644);
MODULE_PARM_DESC(auto_release_ms,
		 "Parked CPUs release themselves after this long, a safety net if nobody releases them (0 = never, the default)");

/*
 * The page the parked CPUs poll, at state_gpa. Only the first byte is the
 * contract (0 = hold, anything else = go); the count after it is ours, so a
 * host can see how many CPUs are in the loop without asking the guest.
 */
struct smpark_state {
	u8 release;
	u8 reserved[3];
	atomic_t parked;
};

static struct smpark_state *state;
/*
 * Parkers that entered the loop in this session, never decremented: a host
 * that releases them as soon as the page shows them all must not make the
 * park request fail because the count in the page already fell again.
 */
static atomic_t arrived;

/* Serialises park, unpark and unload; guards the session state below. */
static DEFINE_MUTEX(smpark_lock);
/* A park session exists: its kthreads are alive and must be stopped. */
static bool session_active;
/* The parker kthread of each parked CPU, NULL elsewhere. */
static DEFINE_PER_CPU(struct task_struct *, parker);
/* mono_fast ns at which parkers release themselves; 0 = never. */
static u64 auto_release_at;

static dev_t smpark_devt;
static struct cdev smpark_cdev;
static struct class *smpark_class;
static struct kobject *smpark_kobj;

static bool smpark_released(void)
{
	/* Pairs with the release stores: work before the store is visible after. */
	return smp_load_acquire(&state->release) != 0;
}

static int parker_fn(void *unused)
{
	unsigned long flags;

	local_irq_save(flags);
	atomic_inc(&state->parked);
	atomic_inc(&arrived);
	while (!smpark_released()) {
		u64 deadline = READ_ONCE(auto_release_at);

		/* ktime_get_mono_fast_ns() is safe with interrupts masked. */
		if (deadline && ktime_get_mono_fast_ns() >= deadline) {
			smp_store_release(&state->release, 1);
			break;
		}
		cpu_relax();
	}
	atomic_dec(&state->parked);
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
	smp_store_release(&state->release, 1);
	for_each_possible_cpu(cpu) {
		struct task_struct *task = per_cpu(parker, cpu);

		if (!task)
			continue;
		/* Waits for the parker to leave the loop; unwoken ones never run. */
		kthread_stop(task);
		per_cpu(parker, cpu) = NULL;
	}
	WRITE_ONCE(session_active, false);
}

/* Waits, without sleeping, until @want CPUs are parked or the timeout ends. */
static int smpark_wait_parked(unsigned int want)
{
	ktime_t deadline = ktime_add_ms(ktime_get(), READ_ONCE(park_timeout_ms));
	int err = 0;

	/*
	 * Not sleeping keeps this CPU ours: a task scheduled here now could spin
	 * in a synchronous cross-CPU call to a parked CPU and never let us run
	 * again. Interrupts stay enabled so calls aimed at this CPU are served.
	 */
	preempt_disable();
	while (atomic_read(&arrived) < want) {
		if (ktime_after(ktime_get(), deadline)) {
			err = -ETIMEDOUT;
			break;
		}
		cpu_relax();
	}
	preempt_enable();
	return err;
}

/* Runs on the CPU that stays up (work_on_cpu), with smpark_lock held. */
static long smpark_park_work(void *unused)
{
	unsigned int self, cpu, want = 0;
	unsigned int ms = READ_ONCE(auto_release_ms);
	int err = 0;

	/* A session released by the host or by expiry still has parkers to reap. */
	smpark_release_locked();

	/* This CPU is the one left running (a bound kworker; pinned all the same). */
	migrate_disable();
	self = smp_processor_id();
	atomic_set(&state->parked, 0);
	atomic_set(&arrived, 0);
	WRITE_ONCE(auto_release_at,
		   ms ? ktime_get_mono_fast_ns() + (u64)ms * NSEC_PER_MSEC : 0);
	/* The parkers start after this store; they see the byte cleared. */
	smp_store_release(&state->release, 0);
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
				atomic_read(&arrived), want,
				READ_ONCE(park_timeout_ms));
	}
	if (err)
		smpark_release_locked();
	else
		pr_info("parked %u CPUs; CPU %u keeps running\n", want, self);
	migrate_enable();
	return err;
}

/*
 * The first online CPU stays up whoever asks: device interrupts (the vsock
 * that carries the unpark request among them) go to it by default, so parking
 * it would leave nobody to hear the release.
 */
static int smpark_park_locked(void)
{
	if (session_active && !smpark_released())
		return -EBUSY;
	return work_on_cpu(cpumask_first(cpu_online_mask), smpark_park_work, NULL);
}

static long smpark_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	int err;

	if (cmd != SMPARK_IOC_PARK && cmd != SMPARK_IOC_UNPARK)
		return -ENOTTY;
	err = mutex_lock_interruptible(&smpark_lock);
	if (err)
		return err;
	if (cmd == SMPARK_IOC_PARK) {
		err = smpark_park_locked();
	} else {
		smpark_release_locked();
		pr_info("released\n");
	}
	mutex_unlock(&smpark_lock);
	return err;
}

static const struct file_operations smpark_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = smpark_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static ssize_t state_gpa_show(struct kobject *kobj, struct kobj_attribute *attr,
			      char *buf)
{
	return sysfs_emit(buf, "0x%llx\n",
			  (unsigned long long)virt_to_phys(state));
}

static ssize_t parked_show(struct kobject *kobj, struct kobj_attribute *attr,
			   char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&state->parked));
}

static struct kobj_attribute state_gpa_attr = __ATTR_RO(state_gpa);
static struct kobj_attribute parked_attr = __ATTR_RO(parked);

static struct attribute *smpark_attrs[] = {
	&state_gpa_attr.attr,
	&parked_attr.attr,
	NULL,
};

static const struct attribute_group smpark_group = {
	.attrs = smpark_attrs,
};

static int __init smpark_init(void)
{
	struct device *dev;
	int err;

	state = (struct smpark_state *)get_zeroed_page(GFP_KERNEL);
	if (!state)
		return -ENOMEM;
	/* Nothing is parked: the byte reads as released until the first park. */
	state->release = 1;

	err = alloc_chrdev_region(&smpark_devt, 0, 1, "smpark");
	if (err)
		goto free_page;
	cdev_init(&smpark_cdev, &smpark_fops);
	err = cdev_add(&smpark_cdev, smpark_devt, 1);
	if (err)
		goto unregister;
	smpark_class = class_create("smpark");
	if (IS_ERR(smpark_class)) {
		err = PTR_ERR(smpark_class);
		goto del_cdev;
	}
	dev = device_create(smpark_class, NULL, smpark_devt, NULL, "smpark");
	if (IS_ERR(dev)) {
		err = PTR_ERR(dev);
		goto destroy_class;
	}
	smpark_kobj = kobject_create_and_add("smpark", kernel_kobj);
	if (!smpark_kobj) {
		err = -ENOMEM;
		goto destroy_device;
	}
	err = sysfs_create_group(smpark_kobj, &smpark_group);
	if (err)
		goto put_kobj;
	return 0;

put_kobj:
	kobject_put(smpark_kobj);
destroy_device:
	device_destroy(smpark_class, smpark_devt);
destroy_class:
	class_destroy(smpark_class);
del_cdev:
	cdev_del(&smpark_cdev);
unregister:
	unregister_chrdev_region(smpark_devt, 1);
free_page:
	free_page((unsigned long)state);
	return err;
}

static void __exit smpark_exit(void)
{
	/* No new opens or sysfs readers; then end any session before the page goes. */
	device_destroy(smpark_class, smpark_devt);
	class_destroy(smpark_class);
	cdev_del(&smpark_cdev);
	unregister_chrdev_region(smpark_devt, 1);
	sysfs_remove_group(smpark_kobj, &smpark_group);
	kobject_put(smpark_kobj);
	mutex_lock(&smpark_lock);
	smpark_release_locked();
	mutex_unlock(&smpark_lock);
	free_page((unsigned long)state);
}

module_init(smpark_init);
module_exit(smpark_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Park all other CPUs on a host-releasable page for multi-vCPU snapshots");
MODULE_AUTHOR("meta-supermachine");
