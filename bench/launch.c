/* The benchmark's timer: runs one command (fork, exec, wait4) and prints
 * what it cost, measured with the monotonic clock around the child alone:
 *
 *   WALL_NS CHILD_CPU_US OTHER_CPU_US MAXRSS_KIB EXIT
 *
 * CHILD_CPU_US is the child's user + system time (its whole tree, from
 * wait4); OTHER_CPU_US is the CPU time the rest of the machine used over
 * the same interval (/proc/stat's busy time less the child's), for
 * spotting a run that outside load disturbed. The command's stdout goes
 * to /dev/null; its stderr is kept.
 *
 * usage: launch CMD [ARG...] [:: CMD [ARG...]]...
 *
 * Commands separated by "::" run one after the other (no shell between
 * them), stopping at the first that fails; the figures cover them all.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Busy time of all CPUs, in microseconds (USER_HZ ticks). */
static long long busy_us(void) {
	unsigned long long v[10] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (!f || fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
			 &v[4], &v[5], &v[6], &v[7]) != 8) {
		perror("/proc/stat");
		exit(2);
	}
	fclose(f);
	/* user nice system idle iowait irq softirq steal: all but idle, iowait */
	unsigned long long ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	return (long long)(ticks * 1000000ULL / sysconf(_SC_CLK_TCK));
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: launch CMD [ARG...] [:: CMD [ARG...]]...\n");
		return 2;
	}
	struct timespec a, b;
	long long child = 0;
	long maxrss = 0;
	int code = 0;
	long long busy0 = busy_us();
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 1; i < argc && code == 0;) {
		int j = i;
		while (j < argc && strcmp(argv[j], "::") != 0)
			j++;
		argv[j < argc ? j : argc] = NULL;
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			int null = open("/dev/null", O_WRONLY);
			dup2(null, 1);
			execvp(argv[i], argv + i);
			perror(argv[i]);
			_exit(127);
		}
		int status;
		struct rusage ru;
		if (wait4(pid, &status, 0, &ru) < 0) {
			perror("wait4");
			return 2;
		}
		child += ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec + ru.ru_stime.tv_sec * 1000000LL +
			 ru.ru_stime.tv_usec;
		if (ru.ru_maxrss > maxrss)
			maxrss = ru.ru_maxrss;
		code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		i = j + 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	long long busy1 = busy_us();
	long long wall = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
	long long other = (busy1 - busy0) - child;
	printf("%lld %lld %lld %ld %d\n", wall, child, other < 0 ? 0 : other, maxrss, code);
	return 0;
}
